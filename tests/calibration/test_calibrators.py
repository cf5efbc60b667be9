"""Calibrators: fit, apply (torch = numpy = ONNX), save/load, thresholds, and the fit/evaluate protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from calibration_cases import overconfident_split

from detkit.calibration.apply import CalibrationModule, apply_to_table, calibrate_scores
from detkit.calibration.calibrators import fit_calibrator
from detkit.calibration.fit import evaluate_calibrator, fit_on_detections
from detkit.calibration.io import load_calibrator, save_calibrator
from detkit.calibration.thresholds import ThresholdRule, choose_thresholds
from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.evaluation.calibration_metrics import select, summary_values
from detkit.evaluation.coco_metrics import evaluate_coco

CM = ClassMap(("a", "b", "c"), (1, 3, 7))


@pytest.fixture(scope="module")
def splits():
    return overconfident_split(1, 160), overconfident_split(2, 160)


def _toy_fit_data(seed=0, n=600):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    q = np.where(rng.random(n) < p**2, rng.uniform(0.5, 1.0, n), 0.0)  # over-confident, IoU-valued targets
    return p, q, rng.integers(0, 3, n)


@pytest.mark.parametrize("method", ["isotonic", "platt", "temperature"])
def test_outputs_monotone_in_unit_interval_and_identical_after_round_trip(method, tmp_path):
    p, q, labels = _toy_fit_data()
    cal = fit_calibrator(p, q, labels, CM, method=method)
    grid = np.linspace(-0.2, 1.2, 2001)  # outside [0, 1] too: clipped
    inside = (grid > 1e-3) & (grid < 1 - 1e-3)
    for k in range(3):
        out = calibrate_scores(cal, grid, np.full(len(grid), k))
        assert np.all((out >= 0) & (out <= 1))
        assert np.all(np.diff(out) >= -1e-15)
        assert np.all(np.diff(out[inside]) > 0), "the map must be strictly increasing: no ties, no reordering"
    path = save_calibrator(cal, tmp_path / "calibrator.json")
    again = load_calibrator(path, CM)
    np.testing.assert_array_equal(calibrate_scores(again, p, labels), calibrate_scores(cal, p, labels))


def test_isotonic_is_scikit_learn_inside_the_fitted_range_and_anchored_outside():
    from sklearn.isotonic import IsotonicRegression

    from detkit.calibration.calibrators import ISO_BLEND

    p, q, labels = _toy_fit_data(1)
    p = 0.1 + 0.8 * p  # fitted range [0.1, 0.9]: the map must still cover [0, 1]
    cal = fit_calibrator(p, q, labels, CM, method="isotonic")
    grid = np.linspace(0, 1, 1001)
    for k in range(3):
        ref = IsotonicRegression(increasing=True, y_min=0, y_max=1, out_of_bounds="clip").fit(
            p[labels == k], q[labels == k]
        )
        out = calibrate_scores(cal, grid, np.full(len(grid), k))
        lo, hi = p[labels == k].min(), p[labels == k].max()
        inside = (grid >= lo) & (grid <= hi)
        np.testing.assert_allclose(
            out[inside], (1 - ISO_BLEND) * ref.predict(grid[inside]) + ISO_BLEND * grid[inside], atol=1e-12
        )
        assert out[0] == 0.0 and out[-1] == pytest.approx(1.0)
        below = grid < lo  # the region the old map flattened to its first knot: now a ramp from (0, 0)
        assert np.all(np.diff(out[below]) > 0) and out[below].max() < out[inside].min()
        params = cal.params[k]
        assert params["x"][0] == 0.0 and params["x"][-1] == 1.0 and np.all(np.diff(params["y"]) > 0)


def test_calibration_keeps_the_order_of_a_detr_shaped_split():
    """The reported failure: 100 queries per image, most low-scoring; the old isotonic map lifted and tied every
    score below its first knot. Now no map ties or reorders two detections of a class that the raw scores
    separate, so AP is the raw AP."""
    from calibration_cases import detr_shaped_split

    (g1, d1), (g2, d2) = detr_shaped_split(1, 40), detr_shaped_split(2, 40)
    cm = g1.class_map()
    ap_raw = evaluate_coco(g2, d2, cm)["AP"]
    for method in ("isotonic", "platt", "temperature"):
        for target in ("tp", "iou"):
            cal = fit_on_detections(d1, g1, cm, method=method, target=target)
            calibrated = apply_to_table(cal, d2, cm)
            for cid in cm.category_ids:
                rows = np.flatnonzero(d2.category_ids == cid)
                order = rows[np.argsort(d2.scores[rows], kind="stable")]
                raw_gap = np.diff(d2.scores[order]) > 0
                assert np.all(np.diff(calibrated.scores[order])[raw_gap] > 0), (method, target, cid)
            assert evaluate_coco(g2, calibrated, cm)["AP"] == pytest.approx(ap_raw, abs=1e-9), (method, target)


def test_platt_recovers_a_known_sigmoid_map():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.99, 20000)
    z = np.log(p) - np.log1p(-p)
    true = 1 / (1 + np.exp(-(0.5 * z - 1.0)))
    t = (rng.random(len(p)) < true).astype(float)
    cal = fit_calibrator(p, t, np.zeros(len(p), int), CM, method="platt", classwise=False)
    assert cal.params[0]["a"] == pytest.approx(0.5, abs=0.05)
    assert cal.params[0]["b"] == pytest.approx(-1.0, abs=0.05)


@pytest.mark.parametrize("method", ["isotonic", "platt", "temperature"])
def test_numpy_torch_and_onnx_give_the_same_scores(method, tmp_path):
    import onnxruntime as ort

    p, q, labels = _toy_fit_data(2)
    cal = fit_calibrator(p, q, labels, CM, method=method)
    module = CalibrationModule(cal).eval()
    scores = torch.rand(2, 50, dtype=torch.float32)
    scores[0, :3] = torch.tensor([0.0, 1.0, 0.5])
    lab = torch.randint(0, 3, (2, 50))
    with torch.no_grad():
        ref32 = module(scores, lab).numpy()
    np.testing.assert_allclose(ref32, calibrate_scores(cal, scores.double().numpy(), lab.numpy()), atol=1e-7)
    path = tmp_path / "cal.onnx"
    torch.onnx.export(
        module,
        (scores, lab),
        str(path),
        opset_version=17,
        input_names=["scores", "labels"],
        output_names=["calibrated"],
        dynamic_axes={"scores": {0: "b", 1: "k"}, "labels": {0: "b", 1: "k"}},
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"scores": scores.numpy(), "labels": lab.numpy()})
    np.testing.assert_allclose(out, ref32, atol=1e-6)
    (out2,) = sess.run(None, {"scores": scores[:1, :7].numpy(), "labels": lab[:1, :7].numpy()})  # dynamic shapes
    np.testing.assert_allclose(out2, ref32[:1, :7], atol=1e-6)


def test_identity_fallback_for_classes_without_matches_or_data():
    p, q, labels = _toy_fit_data(4)
    q = np.where(labels == 1, 0.0, q)  # class b: detections but never a match
    keep = labels != 2  # class c: no detections at all
    cal = fit_calibrator(p[keep], q[keep], labels[keep], CM, method="isotonic")
    assert set(cal.fallback) == {"b", "c"}
    assert "no detection matched" in cal.fallback["b"] and "0 detections" in cal.fallback["c"]
    grid = np.linspace(0, 1, 11)
    np.testing.assert_allclose(calibrate_scores(cal, grid, np.ones(11, int)), grid, atol=1e-12)
    agnostic = fit_calibrator(p[:3], q[:3], labels[:3], CM, method="platt", classwise=False)
    assert "*" in agnostic.fallback and agnostic.params == [{"a": 1.0, "b": 0.0}]


def test_calibrators_lower_calibration_error_on_held_out_split(splits):
    (g1, d1), (g2, d2) = splits
    cm = g1.class_map()
    for method in ("isotonic", "platt"):
        cal = fit_on_detections(d1, g1, cm, method=method, target="iou")
        before, after, _, _ = evaluate_calibrator(cal, d2, g2, cm)
        b, a = summary_values(before), summary_values(after)
        assert a["la_ece_0"] < 0.5 * b["la_ece_0"], (method, b, a)
        assert a["la_ace_0"] < b["la_ace_0"]
        cal_tp = fit_on_detections(d1, g1, cm, method=method, target="tp")
        before, after, _, _ = evaluate_calibrator(cal_tp, d2, g2, cm)
        assert summary_values(after)["d_ece"] < 0.5 * summary_values(before)["d_ece"], method


@pytest.mark.parametrize("method", ["isotonic", "platt", "temperature"])
def test_ap_unchanged_by_classwise_calibration(splits, method):
    (g1, d1), (g2, d2) = splits
    cm = g1.class_map()
    cal = fit_on_detections(d1, g1, cm, method=method, target="tp")
    calibrated = apply_to_table(cal, d2, cm)
    ap_raw = evaluate_coco(g2, d2, cm)["AP"]
    assert evaluate_coco(g2, calibrated, cm)["AP"] == pytest.approx(ap_raw, abs=1e-12)


def test_thresholds_rules(splits):
    (g1, d1), _ = splits
    cm = g1.class_map()
    lrp_t = choose_thresholds(d1, g1, cm, ThresholdRule.parse("lrp"), 0.5)
    f1_t = choose_thresholds(d1, g1, cm, ThresholdRule.parse("f1"), 0.5)
    prec_t = choose_thresholds(d1, g1, cm, ThresholdRule.parse("precision=0.9"), 0.5)
    assert np.all((lrp_t.values > 0) & (lrp_t.values < 1))
    assert np.all((f1_t.values > 0) & (f1_t.values < 1))
    for k, cid in enumerate(cm.category_ids):  # the precision target is met on the fit split
        kept = d1.subset((d1.category_ids == cid) & (d1.scores >= prec_t.values[k]))
        m = select(kept, g1, 0.5)
        assert m.tp.mean() >= 0.9 or cm.names[k] in prec_t.unreachable
    with pytest.raises(DetkitError, match="precision target"):
        ThresholdRule.parse("precision=2")
    with pytest.raises(DetkitError, match="unknown threshold rule"):
        ThresholdRule.parse("best")
    fixed = choose_thresholds(d1, g1, cm, ThresholdRule.parse("0.3"), 0.5)
    assert fixed.values.tolist() == [0.3] * 3 and fixed.rule == "fixed 0.3"
    with pytest.raises(DetkitError, match="fixed threshold must be in"):
        ThresholdRule.parse("1.5")


def test_fit_records_everything_calibrator_json_needs(splits, tmp_path):
    (g1, d1), _ = splits
    cm = g1.class_map()
    cal = fit_on_detections(d1, g1, cm, method="platt", target="iou", threshold="f1")
    path = save_calibrator(cal, tmp_path / "c.json")
    raw = json.loads(path.read_text())
    assert raw["method"] == "platt" and raw["classwise"] is True and raw["target"] == "iou"
    assert raw["iou_threshold"] == 0.0 and raw["class_map"] == cm.to_dict()
    assert set(raw["parameters"]) == set(cm.names)
    assert raw["pre_thresholds"]["rule"] == "lrp" and raw["thresholds"]["rule"] == "f1"
    assert raw["thresholds"]["iou_threshold"] == 0.5  # F1 needs a real TP criterion: tau 0 becomes 0.5
    assert raw["fit"]["split"] == "calib" and raw["fit"]["num_fit_detections"] > 0


def test_load_refuses_other_class_map_and_corrupted_files(tmp_path):
    p, q, labels = _toy_fit_data()
    path = save_calibrator(fit_calibrator(p, q, labels, CM, method="isotonic"), tmp_path / "c.json")
    other = ClassMap(("a", "b", "d"), (1, 3, 8))
    with pytest.raises(DetkitError, match="fitted for 3 classes"):
        load_calibrator(path, other)
    raw = json.loads(path.read_text())
    raw["parameters"]["b"]["y"] = list(reversed(raw["parameters"]["b"]["y"]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(DetkitError, match=r"corrupted calibrator file: parameters\.b\.y must be non-decreasing"):
        load_calibrator(bad)
    trunc = tmp_path / "trunc.json"
    trunc.write_text(path.read_text()[:50])
    with pytest.raises(DetkitError, match="malformed JSON"):
        load_calibrator(trunc)
    other_file = tmp_path / "other.json"
    other_file.write_text(json.dumps({"images": []}))
    with pytest.raises(DetkitError, match="not a detkit calibrator"):
        load_calibrator(other_file)


def test_apply_to_table_refuses_another_class_map(splits):
    (g1, d1), _ = splits
    cal = fit_on_detections(d1, g1, g1.class_map(), method="isotonic")
    with pytest.raises(DetkitError, match="class map mismatch"):
        apply_to_table(cal, d1, ClassMap.from_names(["x", "y", "z"]))
    kept = apply_to_table(cal, d1, g1.class_map(), thresholds=True)
    assert 0 < len(kept) < len(d1)
