"""predictions.json: every malformed entry is a one-line error naming the file and the entry index."""

from __future__ import annotations

import json

import numpy as np
import pytest
from detkit_testing import assert_clean_error

from detkit.data.coco import read_coco
from detkit.errors import DetkitError
from detkit.evaluation.detections import DetectionTable
from detkit.evaluation.predictions import read_predictions, write_predictions

from .conftest import CLASS_MAP

GOOD = {"image_id": 1, "category_id": 5, "bbox": [10.0, 10.0, 20.0, 15.0], "score": 0.9}


def _write(tmp_path, entries, raw: str | None = None):
    p = tmp_path / "predictions.json"
    p.write_text(raw if raw is not None else json.dumps(entries))
    return p


@pytest.mark.parametrize(
    "bad, needles",
    [
        ({"image_id": 999}, ["predictions[1]", "image_id 999"]),
        ({"category_id": 4}, ["predictions[1]", "category_id 4", "not a dataset category"]),
        ({"score": "high"}, ["predictions[1]", "score must be a number"]),
        ({"score": None}, ["predictions[1]", "score must be a number"]),
        ({"bbox": [1, 2, 3]}, ["predictions[1]", "bbox must be 4 numbers"]),
        ({"bbox": "1,2,3,4"}, ["predictions[1]", "bbox must be 4 numbers"]),
        ({"bbox": [50.0, 40.0, -40.0, -10.0]}, ["predictions[1]", "negative width or height", "[x1, y1, x2, y2]"]),
        ({"bbox": [5, 5, -3, 4]}, ["predictions[1]", "negative width or height"]),
        ({"image_id": "1"}, ["predictions[1]", "'image_id' must be an integer"]),
        ({"bbox": None, "_drop": "bbox"}, ["predictions[1]", "missing 'bbox'"]),
    ],
)
def test_bad_entries_are_one_line_cli_errors(tiny_dataset, tmp_path, cli, bad, needles):
    entry = {**GOOD, **bad}
    if "_drop" in entry:
        entry.pop(entry.pop("_drop"))
    p = _write(tmp_path, [GOOD, entry])
    r = cli("eval", "--predictions", p, "--data", tiny_dataset, "--out", tmp_path / "runs")
    assert_clean_error(r, "predictions.json", *needles)
    assert len(r.err.strip().splitlines()) <= 2  # one error line (+ hint)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "raw, needle",
    [
        ('[{"image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4], "score": NaN}]', "not a finite number"),
        ('[{"image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4], "score": Infinity}]', "not a finite number"),
        ('[{"image_id": 1, "category_id": 5, "bbox": [1, NaN, 3, 4], "score": 0.5}]', "non-finite"),
        ('{"images": [], "annotations": [], "categories": []}', "not a predictions (results) list"),
        ('{"image_id": 1}', "must be a JSON list"),
        ("[1, 2]", "expected an object"),
        ("[{", "malformed JSON"),
    ],
)
def test_bad_files_are_one_line_cli_errors(tiny_dataset, tmp_path, cli, raw, needle):
    r = cli("eval", "--predictions", _write(tmp_path, None, raw), "--data", tiny_dataset, "--out", tmp_path / "runs")
    assert_clean_error(r, "predictions.json", needle)


def test_zero_based_labels_get_a_hint(tiny_dataset, tmp_path):
    gt = read_coco(tiny_dataset.parent / "annotations" / "val.json")
    p = _write(tmp_path, [{**GOOD, "category_id": 0}, {**GOOD, "category_id": 2}])
    with pytest.raises(DetkitError) as e:
        read_predictions(p, gt, CLASS_MAP)
    assert "0-based model labels" in e.value.hint


def test_corner_boxes_are_recognised(tiny_dataset, tmp_path):
    """xyxy boxes that happen to have x2 > x1 still read as xywh that run far past the 96x64 images."""
    gt = read_coco(tiny_dataset.parent / "annotations" / "val.json")
    rng = np.random.default_rng(0)
    xy1 = rng.uniform(20, 60, (20, 2)) * [1, 0.6]
    xyxy = np.concatenate([xy1, xy1 + rng.uniform(10, 30, (20, 2))], axis=1)
    entries = [
        {"image_id": int(1 + k % 6), "category_id": 1, "bbox": b, "score": 0.5} for k, b in enumerate(xyxy.tolist())
    ]
    with pytest.raises(DetkitError, match=r"looks like \[x1, y1, x2, y2\]"):
        read_predictions(_write(tmp_path, entries), gt, CLASS_MAP)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    for e, b in zip(entries, xywh.tolist()):
        e["bbox"] = b
    assert len(read_predictions(_write(tmp_path, entries), gt, CLASS_MAP)) == 20


def test_round_trip(tiny_dataset, tmp_path):
    gt = read_coco(tiny_dataset.parent / "annotations" / "val.json")
    table = DetectionTable([1, 2, 3], [1, 5, 9], [[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 10, 10]], [0.9, 0.123456789, 0.5])
    p = write_predictions(tmp_path / "out" / "predictions.json", table)
    back = read_predictions(p, gt, CLASS_MAP)
    np.testing.assert_array_equal(back.category_ids, [1, 5, 9])
    np.testing.assert_allclose(back.boxes, table.boxes)
    assert back.scores.tolist() == table.scores.tolist()
    assert len(read_predictions(_write(tmp_path, []), gt, CLASS_MAP)) == 0
