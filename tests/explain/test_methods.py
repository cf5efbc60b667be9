"""The three map methods on a tiny model: right detections, right shapes, maps that follow the evidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from explain.scenes import single_object_scene

from detkit.api import Detections
from detkit.explain import explain_detections, explain_image
from detkit.explain.sampling import sampling_maps
from detkit.explain.stats import map_stats
from detkit.explain.targets import model_batch


@pytest.mark.parametrize("method", ["sampling", "gradcam"])
def test_torch_methods_explain_what_predict_reports(detector, scene, method):
    ex = explain_image(detector, scene.image, method, top=3, conf=0.0)
    ref = detector.predict([scene.image])[0]
    np.testing.assert_allclose(ex.targets.scores, ref.scores[:3], rtol=1e-6)
    np.testing.assert_allclose(ex.targets.boxes, ref.boxes[:3], rtol=1e-5, atol=1e-3)
    assert ex.maps.shape == (3, *scene.image.shape[:2]) and ex.maps.dtype == np.float32
    assert np.all(ex.maps >= 0) and np.all(ex.maps.reshape(3, -1).max(1) > 0)
    # the query found for each detection carries exactly its score for its label
    with torch.no_grad():
        batch, _ = model_batch(detector, scene.image)
        probs = detector.module(batch)["logits"][0].sigmoid()
    np.testing.assert_allclose(probs[ex.targets.queries, ex.targets.labels].numpy(), ex.targets.scores, rtol=1e-6)


def test_top_and_conf_select_the_detections(detector, scene):
    ex = explain_image(detector, scene.image, "sampling", top=2, conf=0.0)
    assert len(ex.targets) == 2
    assert len(explain_image(detector, scene.image, "sampling", top=5, conf=0.99).targets) == 0


def test_explain_given_detections_finds_their_queries(detector, scene):
    full = explain_image(detector, scene.image, "sampling", top=4, conf=0.0)
    t = full.targets
    again = explain_detections(detector, scene.image, t.boxes[[3, 1]], t.labels[[3, 1]], t.scores[[3, 1]], "sampling")
    np.testing.assert_array_equal(again.targets.queries, t.queries[[3, 1]])
    np.testing.assert_allclose(again.maps, full.maps[[3, 1]], rtol=1e-5, atol=1e-7)


class _Trace:
    """A hand-made trace: one layer, one head, two levels, one point each."""

    def __init__(self, xy, weights):
        self.spatial_shapes = [(16, 16), (8, 8)]
        self.sampling_locations = [torch.tensor(xy, dtype=torch.float32).view(1, 1, 1, 2, 1, 2)]
        self.attention_weights = [torch.tensor(weights, dtype=torch.float32).view(1, 1, 1, 2, 1)]


def test_sampling_map_puts_the_attention_weight_at_the_sampling_points():
    maps, points = sampling_maps(_Trace([[0.25, 0.75], [0.8, 0.2]], [0.9, 0.1]), np.array([0]), (64, 128))
    stats = map_stats(maps, np.array([[16.0, 40.0, 48.0, 56.0]]))
    assert maps.shape == (1, 64, 128)
    np.testing.assert_allclose(stats["peak"][0], [32.5, 48.5], atol=2.0)  # (0.25·128, 0.75·64)
    assert stats["mass_inside"][0] > 0.8  # the 0.9-weight point and its Gaussian lie in this box
    np.testing.assert_allclose(points[0].xy, [[32.0, 48.0], [102.4, 12.8]], atol=1e-4)
    np.testing.assert_array_equal(points[0].level, [0, 1])


class RegionDetector:
    """Model-agnostic stand-in: one detection on a fixed box, scored by how much of the box is left intact."""

    imgsz = (64, 64)

    def __init__(self, image: np.ndarray, box: np.ndarray):
        self.reference = image.astype(np.float32)
        self.box = box.astype(np.float32)

    def predict(self, images, conf=0.0):
        x0, y0, x1, y1 = self.box.astype(int)
        out = []
        for im in images:
            diff = np.abs(im.astype(np.float32) - self.reference)[y0:y1, x0:x1].mean()
            score = float(np.exp(-diff / 10.0))
            out.append(Detections(self.box[None], np.array([score], np.float32), np.array([0]), np.array([1])))
        return out


def test_drise_finds_the_region_a_black_box_detector_depends_on():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    box = np.array([8.0, 32.0, 24.0, 56.0])
    det = RegionDetector(image, box)
    ex = explain_image(det, image, "drise", top=1, conf=0.0, masks=96)
    assert ex.targets.queries is None and len(ex.targets) == 1
    stats = ex.stats
    assert stats["ratio"][0] > 3.0, stats
    assert box[0] <= stats["peak"][0][0] <= box[2] and box[1] <= stats["peak"][0][1] <= box[3]


def test_drise_runs_on_the_torch_detector_too(detector):
    s = single_object_scene(1)
    ex = explain_image(detector, s.image, "drise", top=2, conf=0.0, masks=8)
    assert ex.maps.shape == (2, *s.image.shape[:2]) and np.all(np.isfinite(ex.maps))
