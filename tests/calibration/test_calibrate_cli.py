"""``detkit calibrate`` end to end on predictions files (no model needed), and its error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from calibration_cases import overconfident_split, write_dataset
from detkit_testing import assert_clean_error

from detkit.calibration.io import load_calibrator
from detkit.evaluation.predictions import write_predictions
from detkit.stages.calibrate import calibrate


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    (g_cal, d_cal), (g_test, d_test) = overconfident_split(1, 120), overconfident_split(2, 120)
    data = write_dataset(root / "data", {"calib": g_cal, "test": g_test})
    write_predictions(root / "calib_preds.json", d_cal)
    write_predictions(root / "test_preds.json", d_test)
    return root, data


def test_cli_fits_evaluates_and_writes_artifacts(cli, toy, tmp_path):
    root, data = toy
    out = tmp_path / "cal" / "calibrator.json"
    r = cli(
        "calibrate",
        "--data",
        data,
        "--predictions",
        root / "calib_preds.json",
        "--eval-predictions",
        root / "test_preds.json",
        "--method",
        "platt",
        "--out",
        out,
        "--json",
    )
    assert r.code == 0, r.text
    summary = json.loads(r.out)
    assert summary["eval_split"] == "test" and summary["fit_split"] == "calib"
    ev = summary["evaluation"]["metrics"]
    assert ev["la_ece_0"]["after"] < ev["la_ece_0"]["before"]
    assert summary["evaluation"]["AP"]["after"] == pytest.approx(summary["evaluation"]["AP"]["before"], abs=1e-12)
    cal = load_calibrator(out)
    assert cal.method == "platt" and cal.evaluation["split"] == "test"
    for name in (
        "calibrator_evaluation.json",
        "calibrator_reliability_d_ece.png",
        "calibrator_reliability_la_ece_0.png",
    ):
        assert (out.parent / name).is_file(), name
    human = cli(
        "calibrate",
        "--data",
        data,
        "--predictions",
        root / "calib_preds.json",
        "--eval-predictions",
        root / "test_preds.json",
        "--out",
        out,
        "--class-agnostic",
        "--target",
        "tp",
    )
    assert human.code == 0, human.text
    assert "before" in human.out and "LaECE_0" in human.out and str(out) in human.out.replace("\n", "")


def test_python_api_matches_cli_inputs(toy):
    root, data = toy
    res = calibrate(
        None,
        data,
        predictions=root / "calib_preds.json",
        eval_predictions=root / "test_preds.json",
        method="isotonic",
        threshold="precision=0.8",
    )
    names = [r[0] for r in res.rows()]
    assert any(n.startswith("LaECE_0") for n in names) and names[-1].startswith("AP")
    assert res.calibrator.threshold_rule["post"]["rule"] == "precision=0.8"
    assert np.all(np.isfinite(res.calibrator.thresholds))


def test_refuses_to_evaluate_on_the_fit_split_unless_forced(cli, toy, tmp_path):
    root, data = toy
    args = [
        "calibrate",
        "--data",
        data,
        "--predictions",
        root / "calib_preds.json",
        "--eval-split",
        "calib",
        "--eval-predictions",
        root / "calib_preds.json",
        "--out",
        tmp_path / "c.json",
    ]
    assert_clean_error(cli(*args), "refusing to evaluate", "'calib'")
    assert not (tmp_path / "c.json").exists()
    forced = cli(*args, "--force")
    assert forced.code == 0, forced.text


def test_without_eval_predictions_evaluation_is_skipped_with_a_warning(cli, toy, tmp_path):
    root, data = toy
    r = cli("calibrate", "--data", data, "--predictions", root / "calib_preds.json", "--out", tmp_path / "c.json")
    assert r.code == 0, r.text
    assert "evaluation skipped" in r.err
    assert load_calibrator(tmp_path / "c.json").evaluation is None


def test_class_without_matches_gets_documented_identity(cli, toy, tmp_path):
    root, data = toy
    preds = json.loads((root / "calib_preds.json").read_text())
    for p in preds:  # every class-3 detection moved far away from the objects: no match at any IoU > 0
        if p["category_id"] == 3:
            p["bbox"] = [190.0, 190.0, 1.0, 1.0]
    bad = tmp_path / "nomatch.json"
    bad.write_text(json.dumps(preds))
    r = cli(
        "calibrate",
        "--data",
        data,
        "--predictions",
        bad,
        "--iou",
        "0.5",
        "--target",
        "tp",
        "--out",
        tmp_path / "c.json",
    )
    assert r.code == 0, r.text
    assert "identity calibration" in r.err and "class3" in r.err
    cal = load_calibrator(tmp_path / "c.json")
    assert "no detection matched" in cal.fallback["class3"]


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--method", "spline"], ["unknown --method 'spline'"]),
        (["--target", "map"], ["unknown --target 'map'"]),
        (["--threshold", "precision=3"], ["precision target"]),
        (["--pre-threshold", "high"], ["invalid pre-threshold"]),
        (["--split", "train"], ["no split 'train' to fit"]),
    ],
)
def test_bad_options_are_one_line_errors(cli, toy, tmp_path, extra, needles):
    root, data = toy
    r = cli(
        "calibrate", "--data", data, "--predictions", root / "calib_preds.json", "--out", tmp_path / "c.json", *extra
    )
    assert_clean_error(r, *needles)


def test_no_model_and_no_predictions(cli, toy):
    _, data = toy
    assert_clean_error(cli("calibrate", "--data", data), "give a MODEL or --predictions")


def test_predictions_with_unknown_image_ids(cli, toy, tmp_path):
    root, data = toy
    preds = json.loads((root / "test_preds.json").read_text())  # test-split image ids against the calib split
    bad = tmp_path / "wrong_split.json"
    bad.write_text(json.dumps(preds))
    r = cli("calibrate", "--data", data, "--predictions", bad, "--out", tmp_path / "c.json")
    assert_clean_error(r, "wrong_split.json")
