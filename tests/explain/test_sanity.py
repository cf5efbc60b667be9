"""Sanity of the default maps on a small trained model: they sit on the object and the object's score rests on them.

Trains a small RT-DETR for about two minutes on single-object synthetic scenes (see trained.py), so it is marked
slow. On each scene's top detection: the map's mass inside the box must be at least 3x the box's share of the
image, and masking the map's peak region must lower the score more than masking a random region of that size,
averaged over at least 20 detections.
"""

from __future__ import annotations

import pytest
from explain.trained import train_small_detector

from detkit.explain import DEFAULT_METHOD
from detkit.explain.stats import sanity_check


@pytest.fixture(scope="module")
def trained():
    return train_small_detector(steps=300)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 3 minutes on an idle 2-core CPU; much more on a shared one
def test_default_maps_pass_the_sanity_bars(trained):
    det, scenes = trained
    report = sanity_check(det, [s.image for s in scenes[:24]], DEFAULT_METHOD, conf=0.0)
    assert report["detections"] >= 20, report
    assert report["mean_score"] > 0.3, report  # the model did learn to detect the shapes
    assert report["mass_ratio_mean"] >= 3 and report["mass_ratio_median"] >= 3, report
    assert report["peak_mask_drop"] > report["random_mask_drop"], report
