"""The one-command chain at toy sizes: every stage runs and every artifact lands under one folder."""

from __future__ import annotations

import json

from detkit_testing import assert_clean_error


def test_quickstart_chain_writes_every_artifact(cli, tmp_path):
    out = tmp_path / "qs"
    r = cli(
        "quickstart",
        out,
        "--train-minutes",
        "0.05",
        "--train-images",
        "8",
        "--eval-images",
        "4",
        "--imgsz",
        "96",
        "--json",
    )
    assert r.code == 0, r.text
    doc = json.loads(r.out)
    for key in ("dataset", "run", "eval", "calibrator", "onnx", "predictions", "bench"):
        assert (out / doc["paths"][key].split(str(out) + "/", 1)[1]).exists(), key
    s = doc["summary"]
    assert s["export_parity_passed"] is True and s["export_max_abs_diff_scores"] < 1e-4
    assert s["onnx_latency_ms_b1"] > 0 and s["train_epochs"] >= 1
    assert 0.0 <= s["test_AP"] <= 1.0 and s["coco_o_mAP"] is not None and s["coco_c_mPC"] is not None
    for name in ("metrics.json", "robustness.json", "calibration.json", "report.md"):
        assert (out / "eval" / "test" / name).is_file(), name
    # calibration never costs AP, also inside the exported graph; the calibrator is measured under every shift
    assert abs(s["AP_calibrated"] - s["AP_raw"]) <= 1e-3 and abs(s["onnx_test_AP"] - s["test_AP"]) <= 1e-3
    rob = json.loads((out / "eval" / "test" / "robustness.json").read_text())
    assert rob["calibration"]["calibrator"] is True and rob["coco_o"]["domains"]["sketch"]["calibration"]["calibrated"]
    assert (out / "data" / "coco_o" / "sketch" / "annotations" / "instances_val2017.json").is_file()
    assert set(doc["timings_s"]) >= {"total"}
    bench = json.loads((out / "bench.json").read_text())
    assert bench["rows"][0]["backend"] == "onnxruntime" and bench["rows"][0]["total_ms"] == s["onnx_latency_ms_b1"]


def test_quickstart_refuses_a_non_empty_folder(cli, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    r = cli("quickstart", tmp_path, "--train-minutes", "0.05")
    assert_clean_error(r, "not empty")
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_quickstart_rejects_nonsense_sizes(cli, tmp_path):
    assert_clean_error(cli("quickstart", tmp_path / "q", "--train-minutes", "0"), "train_minutes")


def test_an_input_too_small_for_the_queries_is_a_clean_error(cli, tmp_path):
    r = cli(
        "quickstart",
        tmp_path / "q",
        "--train-minutes",
        "0.05",
        "--train-images",
        "8",
        "--eval-images",
        "4",
        "--imgsz",
        "64",
    )
    assert_clean_error(r, "train.imgsz 64 gives 84 feature tokens, fewer than the 100 queries")
    assert not (tmp_path / "q").exists()  # refused before anything was generated


def test_a_size_not_divisible_by_32_is_refused_before_any_work(cli, tmp_path):
    assert_clean_error(cli("quickstart", tmp_path / "q", "--imgsz", "100"), "train.imgsz", "multiple of 32")
    assert not (tmp_path / "q").exists()
