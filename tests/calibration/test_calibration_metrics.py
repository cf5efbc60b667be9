"""Calibration metrics: netcal parity for D-ECE, hand-computed LaECE_0 / LaACE_0 / LRP, report structure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from calibration_cases import random_case
from netcal.metrics import ECE

from detkit.data.coco import CocoData
from detkit.evaluation.calibration_metrics import (
    bin_indices,
    calibration_report,
    d_ece,
    detection_ece,
    la_ace,
    la_ece,
    lrp,
    select,
)
from detkit.evaluation.detections import DetectionTable


def test_worked_example_equals_netcal():
    p = np.array([0.95, 0.85, 0.82, 0.35, 0.31, 0.05])
    y = np.array([1, 1, 0, 1, 0, 0])
    assert detection_ece(p, y, 10)[0] == pytest.approx(0.185, abs=1e-12)
    assert detection_ece(p, y, 10, sample_threshold=2)[0] == pytest.approx(1.01 / 6, abs=1e-12)
    assert detection_ece(p, y, 10)[0] == pytest.approx(ECE(10, detection=True).measure(p, y), abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_d_ece_equals_netcal_on_matched_detections(seed):
    gt, dets = random_case(seed, n_images=30, coarse_scores=False)
    m = select(dets, gt, 0.5, 0.3)
    assert 0 < m.tp.sum() < len(m.tp)
    y = m.tp.astype(int)

    pooled = d_ece(dets, gt, 0.5, bins=10, score_threshold=0.3, class_agnostic=True)
    assert pooled["value"] == pytest.approx(ECE(10, detection=True).measure(m.scores, y), abs=1e-9)

    classwise = d_ece(dets, gt, 0.5, bins=20, score_threshold=0.3, class_agnostic=False)
    ref = [ECE(20, detection=True).measure(m.scores[m.cls == c], y[m.cls == c]) for c in np.unique(m.cls)]
    assert classwise["value"] == pytest.approx(np.mean(ref), abs=1e-9)

    box = d_ece(dets, gt, 0.5, bins=5, score_threshold=0.3, box_features=True, class_agnostic=True, sample_threshold=2)
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt.images}
    wh = np.asarray([sizes[i] for i in dets.image_ids[m.rows]], dtype=float)
    b = dets.boxes[m.rows]
    X = np.c_[
        m.scores,
        (b[:, 0] + b[:, 2] / 2) / wh[:, 0],
        (b[:, 1] + b[:, 3] / 2) / wh[:, 1],
        b[:, 2] / wh[:, 0],
        b[:, 3] / wh[:, 1],
    ]
    assert box["value"] == pytest.approx(ECE(5, detection=True, sample_threshold=2).measure(X, y), abs=1e-9)
    assert box["features"] == ["confidence", "cx", "cy", "w", "h"] and box["bins"] == [5] * 5


def test_bin_edge_conventions():
    edges = np.linspace(0, 1, 26)
    on_edge = np.array([0.0, edges[2], edges[15], 1.0])
    assert bin_indices(on_edge, 25, "kuzucu").tolist() == [0, 1, 14, 24]  # first [0, 1/J], then (lo, hi]
    assert bin_indices(on_edge, 25, "netcal").tolist() == [0, 2, 15, 24]  # [lo, hi), last closed
    assert bin_indices(on_edge, 25, "saod").tolist() == [0, 2, 15, 24]


def _toy(scores, boxes, cats=None, extra_gt=()):
    """One 100x100 image, GTs A=[0,0,10,10] and B=[50,50,10,10] of class 1 (+ extra), the given detections."""
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0},
        *extra_gt,
    ]
    gt = CocoData(
        images=[{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        annotations=anns,
        categories=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    )
    cats = cats or [1] * len(scores)
    return gt, DetectionTable(np.ones(len(scores)), cats, boxes, scores)


def test_la_ece_0_and_la_ace_0_hand_computed_mixed():
    # d1 = A exactly (IoU 1), d2 = B exactly (IoU 1), d3 overlaps A but both GTs are taken (FP, q = 0), d4 FP.
    gt, dets = _toy([0.9, 0.7, 0.69, 0.1], [[0, 0, 10, 10], [50, 50, 10, 10], [0, 0, 10, 5], [80, 80, 5, 5]])
    ece = la_ece(dets, gt)  # 25 bins: 0.7 and 0.69 share (0.68, 0.72]
    expected = (abs(0.9 - 1) + 2 * abs((0.7 + 0.69) / 2 - (1 + 0) / 2) + abs(0.1 - 0)) / 4
    assert ece["value"] == pytest.approx(expected, abs=1e-12)
    ace = la_ace(dets, gt)
    assert ace["value"] == pytest.approx((0.1 + 0.3 + 0.69 + 0.1) / 4, abs=1e-12)
    assert ece["per_class"] == {"1": pytest.approx(expected), "2": None}  # class 2 has no GT: skipped


def test_perfect_detector_scores_zero():
    gt, dets = _toy([1.0, 1.0], [[0, 0, 10, 10], [50, 50, 10, 10]])
    assert la_ece(dets, gt)["value"] == 0.0
    assert la_ace(dets, gt)["value"] == 0.0
    assert d_ece(dets, gt, score_threshold=0.3)["value"] == pytest.approx(0.0, abs=1e-12)
    r = lrp(select(dets, gt, 0.0))
    assert r.lrp[0] == 0.0 and r.olrp[0] == 0.0


def test_all_false_positives_and_class_average():
    # Class 1: two detections far from both GTs (IoU-0 "TPs" at tau 0, target 0). Class 2: a perfect detection.
    extra = ({"id": 3, "image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10], "area": 100, "iscrowd": 0},)
    gt, dets = _toy([0.3, 0.5, 0.8], [[80, 80, 5, 5], [30, 80, 5, 5], [20, 20, 10, 10]], cats=[1, 1, 2], extra_gt=extra)
    scores = dets.scores.copy()
    scores[2] = 1.0
    dets = dets.with_scores(scores)
    ece = la_ece(dets, gt)
    assert ece["per_class"]["1"] == pytest.approx(0.4) and ece["per_class"]["2"] == 0.0
    assert ece["value"] == pytest.approx(0.2)
    assert la_ace(dets, gt)["value"] == pytest.approx(0.2)
    m = select(dets, gt, 0.0)
    assert m.tp[m.cls == 0].all()  # tau = 0: IoU-0 matches consume the GTs
    m5 = select(dets, gt, 0.5)
    assert not m5.tp[m5.cls == 0].any()
    assert d_ece(dets, gt, 0.5, score_threshold=0.0, class_agnostic=False)["per_class"]["1"] == pytest.approx(0.4)


def test_lrp_hand_computed():
    # tau 0.5: d1 = A (IoU 1), d2 FP, d3 on B with IoU 0.6.
    gt, dets = _toy([0.9, 0.8, 0.7], [[0, 0, 10, 10], [80, 80, 5, 5], [50, 50, 10, 6]])
    r = lrp(select(dets, gt, 0.5))
    assert r.lrp[0] == pytest.approx(((1 - 0.6) / 0.5 + 1 + 0) / 3)
    assert r.olrp[0] == pytest.approx(0.5)  # keep only d1: (0 + 0 + 1 FN) / (1 + 0 + 1)
    assert r.threshold[0] == 0.9 and r.num_kept[0] == 1 and r.num_tp[0] == 1
    assert (r.loc[0], r.fp[0], r.fn[0]) == (0.0, 0.0, 0.5)
    assert np.isnan(r.lrp[1]) and r.threshold[1] == -1  # class without GT
    # No TP at all: LRP 1 and a NaN threshold (keep everything).
    gt, dets = _toy([0.9], [[80, 80, 5, 5]])
    r = lrp(select(dets, gt, 0.5))
    assert r.lrp[0] == 1.0 and np.isnan(r.threshold[0])


def test_lrp_threshold_never_splits_tied_scores():
    gt, dets = _toy([0.9, 0.9], [[0, 0, 10, 10], [80, 80, 5, 5]])
    r = lrp(select(dets, gt, 0.5))
    assert r.num_kept[0] == 2 and r.threshold[0] == 0.9


def test_report_is_json_and_records_settings():
    gt, dets = random_case(4, n_images=20)
    report = calibration_report(dets, gt, thresholds={1: 0.2, 3: float("nan")})
    json.dumps(report, allow_nan=False)
    metrics = report["metrics"]
    assert metrics["d_ece"]["bins"] == [10] and metrics["d_ece"]["score_threshold"] == 0.3
    assert metrics["d_ece"]["matching"]["iou_threshold"] == 0.5
    assert metrics["la_ece_0"]["bins"] == 25 and metrics["la_ece_0"]["matching"]["iou_threshold"] == 0.0
    assert "(lo, hi]" in metrics["la_ece_0"]["bin_edges"]
    assert metrics["la_ece"]["matching"]["iou_threshold"] == 0.1
    assert report["operating_thresholds"] == {"1": 0.2, "3": None}
    for key in ("d_ece", "la_ece_0", "la_ace_0", "lrp_0"):
        assert 0 <= metrics[key]["value"] <= 1


def test_report_without_image_sizes_skips_only_box_features():
    gt, dets = random_case(5, n_images=10)
    for im in gt.images:
        del im["width"], im["height"]
    report = calibration_report(dets, gt)
    assert report["metrics"]["d_ece_box"]["value"] is None
    assert "width/height" in report["metrics"]["d_ece_box"]["skipped"]
    assert report["metrics"]["d_ece"]["value"] is not None
