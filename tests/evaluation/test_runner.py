"""The eval stage end to end on a tiny dataset: artifacts, report sections, the predictions-only path."""

from __future__ import annotations

import json

import pytest

from detkit.evaluation.predictions import write_predictions
from detkit.evaluation.runner import evaluate, next_eval_dir
from detkit_testing import assert_clean_error

from .conftest import oracle_table


def _coco(dataset_yaml):
    return json.loads((dataset_yaml.parent / "annotations" / "val.json").read_text())


def test_predictions_only_writes_every_artifact(tiny_dataset, tmp_path):
    preds = tmp_path / "preds.json"
    write_predictions(preds, oracle_table(_coco(tiny_dataset)))
    result = evaluate(None, tiny_dataset, predictions=preds, out=tmp_path / "runs")
    d = result.dir
    assert d == tmp_path / "runs" / "eval"
    for f in ("predictions.json", "metrics.json", "report.md", "plots/pr_overall.png", "plots/pr_per_class.png", "plots/confusion_matrix.png"):
        assert (d / f).is_file(), f
        if f.endswith(".png"):
            assert (d / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((d / "metrics.json").read_text())
    m = metrics["metrics"]
    assert 0.3 < m["AP50"] <= 1.0 and m["AP"] <= m["AP50"]
    assert [c["name"] for c in m["per_class"]] == ["cat", "dog", "bird"]
    cm = metrics["confusion_matrix"]["counts"]
    assert len(cm) == 4 and sum(cm[3]) == 6  # one false positive per image on background
    assert sum(row[3] for row in cm[:3]) > 0  # the dropped boxes are missed
    # the predictions round-trip with their original category ids
    assert json.loads((d / "predictions.json").read_text()) == json.loads(preds.read_text())
    report = (d / "report.md").read_text()
    for section in ("# Evaluation report", "## Headline metrics", "## Per class", "## Plots", "plots/confusion_matrix.png", "## Files"):
        assert section in report
    assert "| bird |" in report
    assert not list(d.parent.glob(".*tmp"))  # nothing half-written left beside it


def test_eval_dirs_auto_increment(tiny_dataset, tmp_path):
    preds = tmp_path / "preds.json"
    write_predictions(preds, oracle_table(_coco(tiny_dataset)))
    first = evaluate(None, tiny_dataset, predictions=preds, out=tmp_path / "r", name="exp")
    second = evaluate(None, tiny_dataset, predictions=preds, out=tmp_path / "r", name="exp")
    assert (first.dir.name, second.dir.name) == ("exp", "exp2")
    assert next_eval_dir(tmp_path / "r", "exp").name == "exp3"


def test_model_path_runs_batched_inference(tiny_dataset, tmp_path):
    from .conftest import OracleDetector

    det = OracleDetector(tiny_dataset.parent / "annotations" / "val.json")
    result = evaluate(det, tiny_dataset, out=tmp_path / "runs", batch_size=4)
    assert [n for n, _ in det.batches] == [4, 2]
    assert sorted(i for _, ids in det.batches for i in ids) == [1, 2, 3, 4, 5, 6]
    preds = tmp_path / "p.json"
    write_predictions(preds, oracle_table(_coco(tiny_dataset)))
    same = evaluate(None, tiny_dataset, predictions=preds, out=tmp_path / "runs")
    assert result.metrics["AP"] == pytest.approx(same.metrics["AP"])


def test_empty_predictions_give_zero_ap_with_a_warning(tiny_dataset, tmp_path, cli):
    preds = tmp_path / "empty.json"
    preds.write_text("[]")
    r = cli("eval", "--predictions", preds, "--data", tiny_dataset, "--out", tmp_path / "runs", "--json")
    assert r.code == 0, r.text
    summary = json.loads(r.out)
    assert summary["AP"] == 0.0 and summary["AP50"] == 0.0
    assert "warning" in r.err and "no detections" in r.err
    assert "no detections" in (tmp_path / "runs" / "eval" / "report.md").read_text()


def test_cli_human_output_names_the_artifacts(tiny_dataset, tmp_path, cli):
    preds = tmp_path / "preds.json"
    write_predictions(preds, oracle_table(_coco(tiny_dataset)))
    r = cli("eval", "--predictions", preds, "--data", tiny_dataset, "--out", tmp_path / "runs", "--name", "mine")
    assert r.code == 0, r.text
    assert "AP50" in r.out and "report.md" in r.out and str(tmp_path / "runs" / "mine") in r.out.replace("\n", "")


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "nothing to evaluate"),
        (["--split", "train"], "no split 'train'"),
        (["--robustness"], "--robustness needs a MODEL"),
        (["--corruptions", "fog"], "only apply with --robustness"),
    ],
)
def test_cli_bad_invocations(tiny_dataset, tmp_path, cli, args, needle):
    preds = tmp_path / "preds.json"
    write_predictions(preds, oracle_table(_coco(tiny_dataset)))
    extra = [] if needle == "nothing to evaluate" else ["--predictions", preds]
    r = cli("eval", "--data", tiny_dataset, "--out", tmp_path / "runs", *extra, *args)
    assert_clean_error(r, needle)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cli_missing_dataset(tmp_path, cli):
    r = cli("eval", "--predictions", tmp_path / "p.json", "--data", tmp_path / "nope.yaml")
    assert_clean_error(r, "nope.yaml", "not found")
