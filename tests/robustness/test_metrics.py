"""ER, relative drop, mPC and rPC exactly as COCO-O and COCO-C define them, on fixed numbers."""

from __future__ import annotations

import pytest

from detkit.evaluation.robustness.metrics import (
    ER_SLOPE,
    effective_robustness,
    mean_ap,
    mean_performance_under_corruption,
    relative_drop,
    relative_performance_under_corruption,
)


def test_er_is_map_o_minus_045_clean_in_percent():
    assert ER_SLOPE == 0.45
    # DINOv3 Table 10 rows: EVA-02 Cascade 64.1 / 63.6 -> 34.7; DINOv3 Plain-DETR 65.6 / 66.4 -> 36.8
    assert effective_robustness(63.6, 64.1) == pytest.approx(63.6 - 0.45 * 64.1)
    assert effective_robustness(63.6, 64.1) == pytest.approx(34.755)  # the table prints 34.7
    assert effective_robustness(66.4, 65.6) == pytest.approx(36.88)
    # COCO-O teaser: DETR R50 42.0 -> 17.1 gives ER -1.8; FIBER-B 49.5 -> 33.8 gives +11.5
    assert effective_robustness(17.1, 42.0) == pytest.approx(-1.8)
    assert effective_robustness(33.8, 49.5) == pytest.approx(11.525)
    # a line through the origin: a model exactly on the baseline has ER 0
    assert effective_robustness(0.45 * 40.0, 40.0) == pytest.approx(0.0, abs=1e-12)


def test_relative_drop_matches_the_faster_rcnn_claim():
    # 55.7 % drop for Faster R-CNN R50 (37.4 clean) means mAP_O = 16.566
    assert relative_drop(37.4, 37.4 * (1 - 0.557)) == pytest.approx(55.7)
    assert relative_drop(50.0, 60.0) == pytest.approx(-20.0)  # better than clean is a negative drop
    assert relative_drop(0.0, 10.0) is None


def test_map_o_is_the_unweighted_mean_of_domains():
    domains = {"weather": 30.0, "painting": 20.0, "handmake": 18.0, "cartoon": 15.0, "tattoo": 10.0, "sketch": 9.0}
    assert mean_ap(domains.values()) == pytest.approx(17.0)
    with pytest.raises(ValueError):
        mean_ap([])


def test_mpc_is_the_mean_over_corruptions_and_severities_and_rpc_its_ratio_to_clean():
    ap = {
        "gaussian_noise": {1: 30.0, 2: 25.0, 3: 20.0, 4: 15.0, 5: 10.0},
        "fog": {1: 34.0, 2: 33.0, 3: 32.0, 4: 31.0, 5: 30.0},
    }
    mpc = mean_performance_under_corruption(ap)
    assert mpc == pytest.approx((100.0 + 160.0) / 10)
    assert relative_performance_under_corruption(mpc, 36.0) == pytest.approx(26.0 / 36.0 * 100)
    # severity 0 (clean) is never part of mPC
    assert mean_performance_under_corruption({"fog": {0: 36.0, 1: 30.0, 2: 20.0}}) == pytest.approx(25.0)
    # MMDetection docs, Faster R-CNN R50-FPN: P 36.3, mPC 18.2 -> rPC 50.1 (printed 50.2 from unrounded values)
    assert relative_performance_under_corruption(18.2, 36.3) == pytest.approx(50.14, abs=0.01)
    assert relative_performance_under_corruption(10.0, 0.0) is None
