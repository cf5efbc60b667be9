"""``detkit view``: the FiftyOne dataset of an eval dir (TP/FP/FN tags from our matcher) and its error paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from detkit_testing import assert_clean_error

from detkit.evaluation.view import read_eval_dir


@pytest.fixture
def eval_dir(shared_eval_dir, tmp_path):
    """A private copy of the shared eval dir (tests modify it)."""
    import shutil

    return Path(shutil.copytree(shared_eval_dir, tmp_path / "eval"))


@pytest.mark.fiftyone
def test_fiftyone_dataset_has_tagged_boxes(shared_eval_dir, fiftyone_db):
    from detkit.evaluation.view import build_fiftyone_dataset

    contents = read_eval_dir(shared_eval_dir)
    ds = build_fiftyone_dataset(contents)
    try:
        assert len(ds) == 6
        gt_tags = ds.count_label_tags("ground_truth")
        pred_tags = ds.count_label_tags("predictions")
        n_gt = len(contents.gt.annotations)
        # the oracle misses every 4th box and adds one background box per image
        assert gt_tags == {"tp": n_gt - n_gt // 4, "fn": n_gt // 4}
        assert pred_tags == {"tp": n_gt - n_gt // 4, "fp": 6}
        assert sum(ds.values("fp")) == 6 and sum(ds.values("fn")) == n_gt // 4
        first = ds.first()
        det = first["predictions"].detections[0]
        assert 0 <= det.bounding_box[0] <= 1 and det.confidence is not None and det["eval"] in ("tp", "fp")
        assert first.filepath.endswith("im1.png")
    finally:
        ds.delete()


def test_view_without_fiftyone_is_a_clean_error(shared_eval_dir, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "fiftyone", None)  # import fiftyone -> ImportError
    r = cli("view", shared_eval_dir, "--no-browser")
    assert_clean_error(r, "FiftyOne is not installed")
    assert "detkit[fiftyone]" in r.err


@pytest.mark.parametrize("what", ["missing", "not_eval", "bad_metrics"])
def test_view_bad_eval_dir(tmp_path, cli, what, request):
    if what == "bad_metrics":
        target = request.getfixturevalue("eval_dir")
        (target / "metrics.json").write_text("[]")
    else:
        target = tmp_path / "nope" if what == "missing" else tmp_path
    r = cli("view", target, "--no-browser")
    needle = {
        "missing": "eval dir not found",
        "not_eval": "not an eval dir",
        "bad_metrics": "does not say which dataset",
    }[what]
    assert_clean_error(r, needle)


def test_view_bad_predictions_in_eval_dir(eval_dir, cli):
    (eval_dir / "predictions.json").write_text(
        json.dumps([{"image_id": 77, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    )
    assert_clean_error(cli("view", eval_dir), "predictions[0]", "image_id 77")


def test_view_bad_port(shared_eval_dir, cli):
    assert_clean_error(cli("view", shared_eval_dir, "--port", "70000"), "port must be in 1..65535")
