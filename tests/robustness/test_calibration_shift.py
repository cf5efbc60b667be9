"""Calibration under shift: the calibrator applied unchanged on shifted detections, the table and the figure."""

from __future__ import annotations

import numpy as np
import pytest

from detkit.evaluation.detections import DetectionTable
from detkit.evaluation.robustness.calibration import calibration_rows, shift_calibration
from detkit.evaluation.robustness.plots import calibration_groups, plot_calibration_shift
from detkit.evaluation.robustness.report import robustness_markdown


def _case(seed: int, shift: float):
    """Ground truth and over-confident detections whose boxes drift by ``shift`` pixels (a stronger domain shift)."""
    from detkit.data.classmap import ClassMap
    from detkit.data.coco import CocoData

    rng = np.random.default_rng(seed)
    cm = ClassMap(("a", "b"), (1, 2))
    images, anns, rows = [], [], []
    for i in range(1, 41):
        images.append({"id": i, "file_name": f"{i}.png", "width": 100, "height": 100})
        for _ in range(3):
            x, y = rng.uniform(0, 60, 2)
            cat = int(rng.integers(1, 3))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": [x, y, 30, 30],
                    "area": 900.0,
                    "iscrowd": 0,
                }
            )
            rows.append((i, cat, [x + shift * rng.random(), y, 30, 30], rng.uniform(0.7, 1.0)))
        for _ in range(10):  # background queries
            rows.append((i, int(rng.integers(1, 3)), [*rng.uniform(0, 80, 2), 15, 15], rng.uniform(0.0, 0.6)))
    gt = CocoData(images=images, annotations=anns, categories=cm.to_coco_categories())
    dets = DetectionTable(
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows], dtype=float),
        np.array([r[3] for r in rows]),
    )
    return cm, gt, dets


def test_the_fitted_calibrator_is_applied_unchanged_and_helps_under_a_mild_shift():
    from detkit.calibration.fit import fit_on_detections

    cm, gt_fit, d_fit = _case(0, 0.0)
    cal = fit_on_detections(d_fit, gt_fit, cm, method="platt", target="tp")
    _, gt, dets = _case(1, 6.0)
    entry = shift_calibration(dets, gt, cm, cal)
    assert entry["calibrated"]["d_ece"] < entry["raw"]["d_ece"]
    assert entry["num_detections"] == len(dets) and 0 < entry["num_operating"] <= len(dets)
    raw_only = shift_calibration(dets, gt, cm)
    assert raw_only["calibrated"] is None and raw_only["raw"]["d_ece"] == pytest.approx(entry["raw"]["d_ece"])


def _result(with_calibrator: bool):
    cal = {"d_ece": 0.05, "la_ece_0": 0.04} if with_calibrator else None

    def entry(r):
        return {
            "raw": {"d_ece": r, "la_ece_0": r / 2},
            "calibrated": cal,
            "num_detections": 10,
            "num_operating": 5,
        }

    return {
        "calibration": {
            "settings": {"d_ece": "D-ECE protocol", "la_ece_0": "LaECE_0 protocol"},
            "calibrator": with_calibrator,
            "clean": entry(0.1),
        },
        "coco_o": {
            "root": "r",
            "domains": {
                "sketch": {
                    "AP": 1.0,
                    "AP50": 2.0,
                    "relative_drop": 5.0,
                    "images": 1,
                    "boxes": 1,
                    "calibration": entry(0.3),
                }
            },
            "mAP_O": 1.0,
            "clean_AP": 2.0,
            "relative_drop": 50.0,
            "effective_robustness": 0.1,
            "er_slope": 0.45,
            "matches_coco_o_totals": False,
            "missing_coco_o_domains": [],
        },
        "coco_c": None,
        "plots": {"calibration": "plots/robustness_calibration.png"},
    }


@pytest.mark.parametrize("with_calibrator", [True, False])
def test_report_table_and_figure(with_calibrator, tmp_path):
    result = _result(with_calibrator)
    assert [n for n, _ in calibration_rows(result)] == ["clean", "sketch"]
    assert [g for g, _ in calibration_groups(result)] == ["clean", "sketch"]
    md = robustness_markdown(result)
    assert "### Calibration under shift" in md and "robustness_calibration.png" in md
    if with_calibrator:
        assert "| sketch | 30.0 | 5.0 | 15.0 | 4.0 |" in md
    else:
        assert "| sketch | 30.0 | 15.0 |" in md and "--calibrator" in md
    path = plot_calibration_shift(result, tmp_path / "calibration.png")
    assert path.is_file() and path.stat().st_size > 1000
    assert plot_calibration_shift({"calibration": {"clean": None}}, tmp_path / "none.png") is None
