"""The calibration contract of docs/calibration.md: strictly increasing maps that keep AP, what the pre-threshold
means, temperature's guard, the operating point (in predict and optionally in the graph), old files and bad ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from calibration_cases import detr_shaped_split

from detkit.calibration.apply import CalibrationModule, apply_to_table, calibrate_scores, keep_mask
from detkit.calibration.calibrators import fit_calibrator
from detkit.calibration.fit import evaluate_calibrator, fit_on_detections
from detkit.calibration.io import FORMAT_VERSION, load_calibrator, save_calibrator
from detkit.errors import DetkitError
from detkit.evaluation.calibration_metrics import summary_values


@pytest.fixture(scope="module")
def detr():
    """A DETR-shaped calibration split and an independent held-out split (100 queries per image)."""
    return detr_shaped_split(1, 120), detr_shaped_split(2, 120)


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_isotonic_and_platt_halve_the_errors_on_held_out_detr_shaped_detections(detr, method):
    """D-ECE with a calibrator fitted for it (TP targets), LaECE_0 with IoU targets; AP never moves."""
    (g1, d1), (g2, d2) = detr
    cm = g1.class_map()
    for target, metric in (("tp", "d_ece"), ("iou", "la_ece_0")):
        cal = fit_on_detections(d1, g1, cm, method=method, target=target)
        before, after, ap_raw, ap_cal = evaluate_calibrator(cal, d2, g2, cm)
        b, a = summary_values(before)[metric], summary_values(after)[metric]
        assert a <= 0.5 * b, (method, target, b, a)
        assert ap_cal == pytest.approx(ap_raw, abs=1e-9)


def test_temperature_never_worsens_d_ece_on_its_fit_split_and_says_why_it_falls_back(detr):
    (g1, d1), (g2, d2) = detr
    cm = g1.class_map()
    fitted = fit_on_detections(d1, g1, cm, method="temperature", target="tp")
    guard = fitted.fit_info["guard"]
    raw, calibrated = guard["errors_raw_vs_calibrated"]["d_ece"]
    assert calibrated <= raw and "D-ECE" in fitted.fit_info["objective"]
    # IoU targets: T is chosen for LaECE_0, which here would lift the background over 0.3 and raise D-ECE
    fallback = fit_on_detections(d1, g1, cm, method="temperature", target="iou")
    assert fallback.fit_info["guard"]["identity"] is True
    assert all(p == {"T": 1.0} for p in fallback.params)
    assert all("would make the 'calib' split worse (D-ECE" in fallback.fallback[n] for n in cm.names)
    before, after, ap_raw, ap_cal = evaluate_calibrator(fallback, d1, g1, cm, ap=False)
    assert summary_values(after)["d_ece"] == pytest.approx(summary_values(before)["d_ece"])


def test_temperature_fallback_is_recorded_in_the_file_and_printed(detr, tmp_path):
    from calibration_cases import write_dataset

    from detkit.stages.calibrate import calibrate

    (g1, d1), (g2, d2) = detr
    data = write_dataset(tmp_path / "data", {"calib": g1, "test": g2})
    result = calibrate(None, data, predictions=d1, eval_predictions=d2, method="temperature", target="iou")
    assert any("temperature scaling would make the 'calib' split worse" in w for w in result.warnings)
    path = save_calibrator(result.calibrator, tmp_path / "c.json")
    raw = json.loads(path.read_text())
    assert raw["fit"]["guard"]["identity"] is True and "worse" in raw["fit"]["guard"]["reason"]
    assert "T = 1 unless that error goes down" in raw["map"]


def test_pre_threshold_chooses_the_fit_region_and_drops_nothing(detr):
    (g1, d1), (g2, d2) = detr
    cm = g1.class_map()
    cal = fit_on_detections(d1, g1, cm, method="isotonic", target="iou", pre_threshold="lrp")
    assert cal.pre_thresholds is not None and np.all(np.isfinite(cal.pre_thresholds))
    assert cal.fit_info["num_fit_detections"] < len(d1)  # fitted on the region above u_c only ...
    out = apply_to_table(cal, d2, cm)
    assert len(out) == len(d2)  # ... but every detection is calibrated, none dropped
    for k, cid in enumerate(cm.category_ids):
        rows = d2.category_ids == cid
        below = rows & (d2.scores < cal.pre_thresholds[k])
        above = rows & (d2.scores >= cal.pre_thresholds[k])
        assert out.scores[below].max() < out.scores[above].min()  # the low queries stay below the fitted ones
    auto_tp = fit_on_detections(d1, g1, cm, method="platt", target="tp")
    assert auto_tp.pre_thresholds is None and auto_tp.fit_info["num_fit_detections"] == len(d1)
    with pytest.raises(DetkitError, match="invalid pre-threshold"):
        fit_on_detections(d1, g1, cm, pre_threshold="high")


def test_drop_below_threshold_zeroes_exactly_the_detections_outside_the_operating_point(detr):
    (g1, d1), (g2, d2) = detr
    cm = g1.class_map()
    cal = fit_on_detections(d1, g1, cm, method="platt", target="iou")
    labels = cm.category_ids_to_labels(d2.category_ids)
    kept = calibrate_scores(cal, d2.scores, labels)
    dropped = calibrate_scores(cal, d2.scores, labels, drop_below_threshold=True)
    keep = keep_mask(cal, d2.scores, kept, labels)
    assert 0 < keep.sum() < len(keep)
    np.testing.assert_array_equal(dropped[keep], kept[keep])
    assert np.all(dropped[~keep] == 0.0)
    module = CalibrationModule(cal, drop_below_threshold=True)  # what the graph runs, on float32 scores
    s32 = d2.scores.astype(np.float32)
    with torch.no_grad():
        out = module(torch.as_tensor(s32), torch.as_tensor(labels)).numpy()
    np.testing.assert_allclose(out, calibrate_scores(cal, s32, labels, drop_below_threshold=True), atol=1e-6)


def test_format_1_files_are_still_read_and_format_2_files_must_be_strictly_increasing(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.random(500)
    q = (rng.random(500) < p).astype(float)
    from detkit.data.classmap import ClassMap

    cm = ClassMap(("a", "b"), (1, 2))
    cal = fit_calibrator(p, q, rng.integers(0, 2, 500), cm, method="isotonic")
    path = save_calibrator(cal, tmp_path / "c.json")
    raw = json.loads(path.read_text())
    assert raw["detkit_calibrator"] == FORMAT_VERSION == 2 and "(0, 0)" in raw["map"]
    legacy = dict(raw, detkit_calibrator=1)
    legacy["parameters"] = {n: {"x": [0.3, 0.6, 0.9], "y": [0.2, 0.2, 0.7]} for n in cm.names}  # flat, no anchors
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    old = load_calibrator(tmp_path / "old.json", cm)
    assert old.format_version == 1
    flat = dict(raw, parameters=legacy["parameters"])
    (tmp_path / "flat.json").write_text(json.dumps(flat))
    with pytest.raises(DetkitError, match=r"corrupted calibrator file: parameters\.a: x and y must be strictly"):
        load_calibrator(tmp_path / "flat.json", cm)
    platt = fit_calibrator(p, q, rng.integers(0, 2, 500), cm, method="platt")
    doc = json.loads(save_calibrator(platt, tmp_path / "p.json").read_text())
    doc["parameters"]["a"]["a"] = 0.0  # a constant map would tie every detection
    (tmp_path / "p0.json").write_text(json.dumps(doc))
    with pytest.raises(DetkitError, match=r"parameters\.a\.a must be > 0"):
        load_calibrator(tmp_path / "p0.json", cm)


def test_corrupted_calibrator_is_one_clean_line_on_the_cli(cli, tmp_path):
    from calibration_cases import overconfident_split, write_dataset
    from detkit_testing import assert_clean_error

    from detkit.evaluation.predictions import write_predictions

    g, d = overconfident_split(3, 20)
    data = write_dataset(tmp_path / "data", {"test": g})
    write_predictions(tmp_path / "p.json", d)
    bad = tmp_path / "calibrator.json"
    bad.write_text('{"detkit_calibrator": 2, "method": "isotonic"')
    r = cli("eval", "--predictions", tmp_path / "p.json", "--data", data, "--split", "test", "--calibrator", bad)
    assert_clean_error(r, "calibrator")


def test_temperature_does_not_lift_an_untrained_models_scores_over_the_d_ece_cut(detr):
    """A barely trained model scores everything below 0.3 (D-ECE undefined): temperature must not invent
    detections for D-ECE to judge by pushing them over the cut."""
    from detkit.calibration.fit import _worse

    (g1, d1), _ = detr
    cm = g1.class_map()
    low = d1.with_scores(0.25 * d1.scores)
    cal = fit_on_detections(low, g1, cm, method="temperature", target="tp")
    assert apply_to_table(cal, low, cm).scores.max() < 0.3
    assert _worse(None, 0.2) and _worse(0.2, None) and not _worse(None, None) and not _worse(0.3, 0.2)
