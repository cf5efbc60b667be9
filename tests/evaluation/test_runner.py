"""The eval stage end to end on a tiny dataset: artifacts, report sections, the model and predictions paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from detkit_testing import assert_clean_error

from detkit.data.dataset import load_dataset
from detkit.evaluation import evaluate, predict_split  # the public Python API

from .conftest import OracleDetector


def test_predictions_only_writes_every_artifact(shared_eval_dir, oracle_predictions, tiny_dataset):
    d = shared_eval_dir
    assert d.name == "eval" and d.parent.name == "runs"
    for f in (
        "predictions.json",
        "metrics.json",
        "report.md",
        "plots/pr_overall.png",
        "plots/pr_per_class.png",
        "plots/confusion_matrix.png",
    ):
        assert (d / f).is_file(), f
        if f.endswith(".png"):
            assert (d / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((d / "metrics.json").read_text())
    m = metrics["metrics"]
    assert 0.3 < m["AP50"] <= 1.0 and m["AP"] <= m["AP50"]
    assert [c["name"] for c in m["per_class"]] == ["cat", "dog", "bird"]
    assert metrics["split"] == "val" and metrics["dataset"].endswith("dataset.yaml")
    cm = metrics["confusion_matrix"]["counts"]
    assert len(cm) == 4 and sum(cm[3]) == 6  # one false positive per image on background
    assert sum(row[3] for row in cm[:3]) > 0  # the dropped boxes are missed
    # the predictions round-trip with their original category ids
    assert json.loads((d / "predictions.json").read_text()) == json.loads(oracle_predictions.read_text())
    # re-evaluating the written predictions.json reproduces metrics.json exactly
    from detkit.data.coco import read_coco
    from detkit.evaluation import evaluate_coco, read_predictions
    from detkit.evaluation.coco_metrics import metrics_for_json

    spec = load_dataset(tiny_dataset)
    gt = read_coco(spec.split("val").annotations)
    again = metrics_for_json(
        evaluate_coco(gt, read_predictions(d / "predictions.json", gt, spec.class_map), spec.class_map)
    )
    assert again == m
    report = (d / "report.md").read_text()
    for section in (
        "# Evaluation report",
        "## Headline metrics",
        "## Per class",
        "## Plots",
        "plots/confusion_matrix.png",
        "## Files",
    ):
        assert section in report
    assert "| bird |" in report and "## Calibration" not in report
    assert not list(d.parent.glob(".*tmp"))  # nothing half-written left beside it


def test_eval_dirs_auto_increment(tmp_path, tiny_dataset, shared_eval_dir):
    """eval follows the one run-folder rule (tests/core/test_run_dirs_device.py): a taken name is numbered."""
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text("{}")
    gt = shared_eval_dir / "predictions.json"
    result = evaluate(None, tiny_dataset, predictions=gt, out=tmp_path)
    assert result.dir == tmp_path / "eval2"


def test_model_path_runs_batched_inference_and_calibration(tiny_dataset, shared_eval_dir, tmp_path):
    det = OracleDetector(tiny_dataset.parent / "annotations" / "val.json")
    table = predict_split(det, load_dataset(tiny_dataset).split("val"), batch_size=4)
    assert [n for n, _ in det.batches] == [4, 2]
    assert sorted(i for _, ids in det.batches for i in ids) == [1, 2, 3, 4, 5, 6]
    assert sorted(table.scores.tolist()) == sorted(det.table.scores.tolist())

    result = evaluate(det, tiny_dataset, out=tmp_path / "runs", batch_size=5, calibration=True)
    with_file = json.loads((shared_eval_dir / "metrics.json").read_text())["metrics"]
    assert result.metrics["AP"] == pytest.approx(with_file["AP"])
    d = result.dir
    cal = json.loads((d / "calibration.json").read_text())
    assert 0 <= cal["metrics"]["d_ece"]["value"] <= 1
    assert cal["metrics"]["d_ece"]["matching"]["iou_threshold"] == 0.5
    assert (d / "plots" / "reliability_d_ece.png").is_file()
    report = (d / "report.md").read_text()
    assert "## Calibration" in report and "plots/reliability_d_ece.png" in report and "D-ECE" in report
    assert "OracleDetector" in report


def test_class_map_mismatch_is_refused(tiny_dataset, tmp_path, cli):
    from detkit.data.classmap import ClassMap
    from detkit.errors import DetkitError

    det = OracleDetector(tiny_dataset.parent / "annotations" / "val.json")
    det.class_map = ClassMap(("cat", "dog", "fish"), (1, 5, 9))
    with pytest.raises(DetkitError, match="class map mismatch"):
        evaluate(det, tiny_dataset, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_missing_image_is_named(tiny_dataset, tmp_path):
    import shutil

    from detkit.errors import DetkitError

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset.parent, copy, ignore=shutil.ignore_patterns("runs"))
    (copy / "images" / "val" / "im3.png").unlink()
    with pytest.raises(DetkitError, match="im3.png"):
        predict_split(OracleDetector(copy / "annotations" / "val.json"), load_dataset(copy).split("val"))


def test_empty_predictions_give_zero_ap_with_a_warning(tiny_dataset, tmp_path, cli):
    preds = tmp_path / "empty.json"
    preds.write_text("[]")
    r = cli("eval", "--predictions", preds, "--data", tiny_dataset, "--out", tmp_path / "runs", "--json")
    assert r.code == 0, r.text
    summary = json.loads(r.out)
    assert summary["AP"] == 0.0 and summary["AP50"] == 0.0 and summary["num_detections"] == 0
    assert "warning" in r.err and "no detections" in r.err
    assert summary["files"]["report.md"].endswith("report.md")
    assert "no detections" in (tmp_path / "runs" / "eval" / "report.md").read_text()


def test_cli_human_output_names_the_artifacts(tiny_dataset, oracle_predictions, tmp_path, cli):
    r = cli(
        "eval",
        "--predictions",
        oracle_predictions,
        "--data",
        tiny_dataset,
        "--out",
        tmp_path / "runs",
        "--name",
        "mine",
    )
    assert r.code == 0, r.text
    flat = r.out.replace("\n", "")
    assert "AP50" in flat and str(tmp_path / "runs" / "mine" / "report.md") in flat
    q = cli(
        "eval",
        "--predictions",
        oracle_predictions,
        "--data",
        tiny_dataset,
        "--out",
        tmp_path / "runs",
        "--name",
        "mine",
        "--quiet",
    )
    assert q.code == 0 and q.out == "" and (tmp_path / "runs" / "mine2" / "report.md").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "nothing to evaluate"),
        (["--split", "train"], "no split 'train'"),
        (["--robustness"], "robustness needs a model"),  # the library names its parameters, the CLI adds the flags:
        (["--corruptions", "fog"], "on the command line: --robustness"),
        (["--severities", "1,x"], "comma-separated list of integers"),
        (["--name", "a/b"], "plain folder name"),
        (["--name", "a/b"], "on the command line: --name"),
    ],
)
def test_cli_bad_invocations(tiny_dataset, oracle_predictions, tmp_path, cli, args, needle):
    extra = [] if needle == "nothing to evaluate" else ["--predictions", oracle_predictions]
    r = cli("eval", "--data", tiny_dataset, "--out", tmp_path / "runs", *extra, *args)
    assert_clean_error(r, needle)
    assert not (tmp_path / "runs").exists()


def test_cli_missing_dataset_and_model_with_predictions(tiny_dataset, oracle_predictions, tmp_path, cli):
    assert_clean_error(
        cli("eval", "--predictions", oracle_predictions, "--data", tmp_path / "nope.yaml"), "nope.yaml", "not found"
    )
    assert_clean_error(cli("eval", "run1", "--predictions", oracle_predictions, "--data", tiny_dataset), "not both")


def test_confusion_matrix_counts():
    from detkit.data.classmap import ClassMap
    from detkit.data.coco import CocoData
    from detkit.evaluation.detections import DetectionTable
    from detkit.evaluation.plots import confusion_matrix

    cm_map = ClassMap(("a", "b"), (1, 2))
    gt = CocoData(
        images=[{"id": 1, "file_name": "1.png", "width": 100, "height": 100}],
        annotations=[
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [80, 0, 10, 10], "area": 100, "iscrowd": 0},
        ],
        categories=cm_map.to_coco_categories(),
    )
    dets = DetectionTable(
        [1, 1, 1, 1],
        [1, 1, 2, 2],
        [[0, 0, 10, 10], [50, 50, 10, 10], [20, 20, 5, 5], [80, 0, 10, 10]],
        [0.9, 0.8, 0.7, 0.1],  # the last one is below the 0.3 score threshold
    )
    cm = confusion_matrix(dets, gt, cm_map)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [1, 0, 1], [0, 1, 0]])


def test_robustness_and_calibrator_sections(tiny_dataset, tmp_path):
    """COCO-C (one corruption, one severity) and a COCO-O domain run through R's suite; C's calibrator is applied."""
    import shutil

    from detkit.calibration import fit_calibrator, save_calibrator
    from detkit.data.coco import read_coco

    from .conftest import CLASS_MAP

    domain = tmp_path / "coco_o" / "sketch"
    shutil.copytree(tiny_dataset.parent / "images" / "val", domain / "val2017")
    (domain / "annotations").mkdir()
    shutil.copy(tiny_dataset.parent / "annotations" / "val.json", domain / "annotations" / "instances_val2017.json")

    det = OracleDetector(tiny_dataset.parent / "annotations" / "val.json")
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 200)
    cal = fit_calibrator(
        scores,
        (rng.uniform(0, 1, 200) < scores * 0.5).astype(float),
        rng.integers(0, 3, 200),
        CLASS_MAP,
        method="platt",
        classwise=False,
        target="tp",
    )
    cal_path = save_calibrator(cal, tmp_path / "calibrator.json")

    result = evaluate(
        det,
        tiny_dataset,
        out=tmp_path / "runs",
        robustness=True,
        coco_o=tmp_path / "coco_o",
        corruptions=["gaussian_noise"],
        severities=[2],
        cache_dir=tmp_path / "cache",
        calibrator=cal_path,
        calibration=True,
    )
    d = result.dir
    rob = json.loads((d / "robustness.json").read_text())
    assert rob["coco_c"]["corruptions"] == ["gaussian_noise"] and rob["coco_c"]["severities"] == [2]
    # the oracle ignores pixels: every shifted AP equals the clean AP
    assert rob["coco_c"]["mPC"] == pytest.approx(100 * result.metrics["AP"])
    assert rob["coco_o"]["domains"]["sketch"]["AP"] == pytest.approx(rob["coco_c"]["mPC"])
    for plot in rob["plots"].values():
        assert (d / plot).is_file()
    report = (d / "report.md").read_text()
    assert "## Robustness" in report and "calibrator.json" in report
    raw = {round(s, 9) for s in det.table.scores.tolist()}
    calibrated = json.loads((d / "predictions.json").read_text())
    assert not raw & {round(p["score"], 9) for p in calibrated}  # every score went through the calibrator
    assert read_coco(tiny_dataset.parent / "annotations" / "val.json").images  # dataset untouched

    # calibration under shift: the calibrator inside every domain and corruption, raw and calibrated
    entries = [
        rob["calibration"]["clean"],
        rob["coco_o"]["domains"]["sketch"]["calibration"],
        rob["coco_c"]["calibration"]["gaussian_noise"]["2"],
    ]
    for e in entries:
        for side in ("raw", "calibrated"):
            assert set(e[side]) == {"d_ece", "la_ece_0"} and all(0 <= v <= 1 for v in e[side].values())
    # the oracle is perfectly localised with scores 0.5-0.9: platt toward P(TP)*0.5 changes the errors
    assert entries[0]["calibrated"]["d_ece"] != pytest.approx(entries[0]["raw"]["d_ece"])
    cal_report = json.loads((d / "calibration.json").read_text())
    assert cal_report["raw_vs_calibrated"]["raw"] == pytest.approx(entries[0]["raw"])
    assert rob["plots"]["calibration"] == "plots/robustness_calibration.png"
    assert (d / "plots" / "reliability_la_ece_0_per_class.png").is_file()
    assert "### Calibration under shift" in report and "| sketch |" in report and "| gaussian_noise s2 |" in report
    assert "robustness_calibration.png" in report and "per-class reliability diagrams" in report
    from detkit.cli.eval import summary_rows  # the terminal tables are the CLI's

    titles = [t for t, _ in summary_rows(result)]
    assert any(t.startswith("Calibration under shift") for t in titles)


def test_calibrating_an_onnx_model_twice_is_refused_and_in_graph_dropping_is_said(tiny_dataset, tmp_path):
    from detkit.calibration import fit_calibrator
    from detkit.errors import DetkitError

    from .conftest import CLASS_MAP

    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, 200)
    cal = fit_calibrator(
        scores,
        (rng.uniform(0, 1, 200) < scores).astype(float),
        rng.integers(0, 3, 200),
        CLASS_MAP,
        method="platt",
        target="tp",
    )
    det = OracleDetector(tiny_dataset.parent / "annotations" / "val.json")
    det.calibrator = cal  # what OnnxDetector exposes when the graph embeds a calibrator
    with pytest.raises(DetkitError, match="already embeds a calibrator"):
        evaluate(det, tiny_dataset, out=tmp_path / "runs", calibrator=cal)
    det.metadata = {"operating_point": {"applied_in_graph": True}}
    result = evaluate(det, tiny_dataset, out=tmp_path / "runs")
    assert any("drops detections outside" in w for w in result.warnings)
    assert "drops detections outside" in (result.dir / "report.md").read_text()


def test_bad_robustness_options_fail_before_inference(tiny_dataset, tmp_path, cli):
    det = OracleDetector(tiny_dataset.parent / "annotations" / "val.json")
    from detkit.errors import DetkitError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DetkitError, match="no COCO-O domains"):
        evaluate(det, tiny_dataset, out=tmp_path / "runs", robustness=True, coco_o=tmp_path / "empty")
    with pytest.raises(DetkitError, match="fgo"):
        evaluate(det, tiny_dataset, out=tmp_path / "runs", robustness=True, corruptions=["fgo"])
    assert det.batches == [] and not (tmp_path / "runs").exists()
    r = cli(
        "eval", "--predictions", tmp_path / "x.json", "--data", tiny_dataset, "--calibrator", tmp_path / "nope.json"
    )
    assert_clean_error(r, "nope.json")


def test_cli_with_a_real_checkpoint(tiny_dataset, tiny_checkpoint, tmp_path, cli):
    """MODEL resolves through detkit.api.load_model; top-k over 20 queries x 3 classes gives 60 detections per image."""
    r = cli(
        "eval",
        tiny_checkpoint,
        "--data",
        tiny_dataset,
        "--out",
        tmp_path / "runs",
        "--batch",
        "4",
        "--device",
        "cpu",
        "--json",
    )
    assert r.code == 0, r.text
    summary = json.loads(r.out)
    assert summary["num_images"] == 6 and summary["num_detections"] == 6 * 20 * 3
    assert 0.0 <= summary["AP"] <= 1.0
    preds = json.loads((tmp_path / "runs" / "eval" / "predictions.json").read_text())
    assert {p["category_id"] for p in preds} <= {1, 5, 9}
    assert str(tiny_checkpoint) in (tmp_path / "runs" / "eval" / "report.md").read_text()
    assert_clean_error(
        cli("eval", tmp_path / "missing.pt", "--data", tiny_dataset, "--out", tmp_path / "runs"), "missing.pt"
    )


def test_cli_robustness_error_paths(tiny_dataset, tiny_checkpoint, tmp_path, cli):
    (tmp_path / "empty").mkdir()
    base = ["eval", tiny_checkpoint, "--data", tiny_dataset, "--out", tmp_path / "runs", "--robustness"]
    assert_clean_error(cli(*base, "--coco-o", tmp_path / "empty"), "no COCO-O domains")
    assert_clean_error(cli(*base, "--severities", "7"), "7")
    assert not (tmp_path / "runs").exists()


def test_cli_robustness_uses_the_given_cache_dir(tiny_dataset, tiny_checkpoint, tmp_path, cli):
    args = [
        "eval",
        tiny_checkpoint,
        "--data",
        tiny_dataset,
        "--out",
        tmp_path / "runs",
        "--robustness",
        "--corruptions",
        "gaussian_noise",
        "--severities",
        "1",
        "--cache-dir",
        tmp_path / "cache",
        "--json",
    ]
    r = cli(*args)
    assert r.code == 0, r.text
    assert json.loads(r.out)["robustness"]["coco_c"]["mPC"] is not None
    cached = list((tmp_path / "cache").rglob("*.png"))
    assert len(cached) == 6  # one corrupted copy per image of the split, under the folder the user chose
