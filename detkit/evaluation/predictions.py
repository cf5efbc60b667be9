"""``predictions.json``: COCO results format (``[{image_id, category_id, bbox: [x, y, w, h], score}]``).

Reading checks every entry against the ground truth and the class map and stops at the first problem
with a one-line error naming the file and the entry index. The column arrays are built in one pass; the
slower per-entry search only runs to name the culprit once a check has failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData
from detkit.errors import DetkitError
from detkit.evaluation.detections import DetectionTable
from detkit.utils.atomic import atomic_write_json
from detkit.utils.files import read_json

FORMAT_HINT = "predictions.json is a COCO results list: [{image_id, category_id, bbox: [x, y, w, h] in pixels, score}]"
_KEYS = ("image_id", "category_id", "bbox", "score")


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def _fail(path: Path, index: int, problem: str, hint: str = FORMAT_HINT) -> DetkitError:
    return DetkitError(f"predictions[{index}]: {problem}", hint=hint, path=path)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_structure(raw: list, path: Path) -> None:
    """Every entry an object with the four keys, integer ids, a numeric score and a 4-number box."""
    for i, d in enumerate(raw):
        if not isinstance(d, dict):
            raise _fail(path, i, f"expected an object, got {type(d).__name__}")
        missing = [k for k in _KEYS if k not in d]
        if missing:
            raise _fail(path, i, f"missing {', '.join(repr(k) for k in missing)}")
        for k in ("image_id", "category_id"):
            if not _is_int(d[k]):
                raise _fail(path, i, f"'{k}' must be an integer, got {d[k]!r}")
        if not _is_number(d["score"]):
            raise _fail(path, i, f"score must be a number, got {d['score']!r}")
        b = d["bbox"]
        if not isinstance(b, list) or len(b) != 4 or not all(_is_number(v) for v in b):
            raise _fail(path, i, f"bbox must be 4 numbers [x, y, w, h], got {b!r}")


def _columns(raw: list, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        ok = all(type(d) is dict for d in raw)
        image_ids = [d["image_id"] for d in raw]
        category_ids = [d["category_id"] for d in raw]
        scores = [d["score"] for d in raw]
        boxes = [d["bbox"] for d in raw]
        ok = ok and all(type(v) is int for v in image_ids) and all(type(v) is int for v in category_ids)
        ok = ok and all(type(v) in (int, float) for v in scores)
        ok = ok and all(type(b) is list and len(b) == 4 for b in boxes)
        box_arr = np.asarray(boxes, dtype=object).reshape(-1, 4) if ok else None
        ok = ok and all(type(v) in (int, float) for v in box_arr.ravel())
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        _check_structure(raw, path)  # names the first bad entry
        raise DetkitError("malformed predictions", hint=FORMAT_HINT, path=path)  # pragma: no cover - defensive
    return (
        np.asarray(image_ids, dtype=np.int64),
        np.asarray(category_ids, dtype=np.int64),
        box_arr.astype(np.float64),
        np.asarray(scores, dtype=np.float64),
    )


def parse_predictions(
    raw: Any, gt: CocoData, class_map: ClassMap, path: str | Path = "predictions.json"
) -> DetectionTable:
    """Check already-parsed COCO results against ``gt`` and ``class_map`` and return them as a table."""
    path = Path(path)
    if isinstance(raw, dict) and "annotations" in raw:
        raise DetkitError("this is a COCO dataset file, not a predictions (results) list", hint=FORMAT_HINT, path=path)
    if not isinstance(raw, list):
        raise DetkitError(f"predictions must be a JSON list, got {type(raw).__name__}", hint=FORMAT_HINT, path=path)
    if not raw:
        return DetectionTable.empty()
    image_ids, category_ids, boxes, scores = _columns(raw, path)

    known_images = np.asarray([int(im["id"]) for im in gt.images], dtype=np.int64)
    bad = ~np.isin(image_ids, known_images)
    if bad.any():
        i = _first(bad)
        raise _fail(
            path,
            i,
            f"image_id {image_ids[i]} is not an image of the evaluated split ({len(known_images)} images)",
            hint="predictions must come from the same split (and its image ids) as dataset/split",
        )

    known_cats = np.asarray(class_map.category_ids, dtype=np.int64)
    bad = ~np.isin(category_ids, known_cats)
    if bad.any():
        i = _first(bad)
        hint = "use the dataset's original category ids (the 'id' of each class in dataset.yaml)"
        if np.all(np.isin(np.unique(category_ids), np.arange(len(class_map)))):
            hint += "; these look like 0-based model labels"
        raise _fail(
            path,
            i,
            f"category_id {category_ids[i]} is not a dataset category (known: {list(class_map.category_ids)})",
            hint=hint,
        )

    bad = ~np.isfinite(scores)
    if bad.any():
        i = _first(bad)
        raise _fail(path, i, f"score is {raw[i]['score']!r}, not a finite number")

    bad = ~np.isfinite(boxes).all(axis=1)
    if bad.any():
        i = _first(bad)
        raise _fail(path, i, f"bbox {raw[i]['bbox']!r} has a non-finite value")

    bad = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if bad.any():
        i = _first(bad)
        b = raw[i]["bbox"]
        looks_xyxy = " (it looks like [x1, y1, x2, y2] with x2 < x1 or y2 < y1)" if b[2] < b[0] or b[3] < b[1] else ""
        raise _fail(path, i, f"bbox {b!r} has a negative width or height{looks_xyxy}")

    _refuse_xyxy(image_ids, boxes, gt, path)
    return DetectionTable(image_ids, category_ids, boxes, scores)


def _refuse_xyxy(image_ids: np.ndarray, boxes: np.ndarray, gt: CocoData, path: Path) -> None:
    """Corner boxes ``[x1, y1, x2, y2]`` read as ``[x, y, w, h]`` have w >= x and h >= y for every box, and
    those right of or below the image centre then reach far past the image border. Real xywh boxes almost
    never do both, so that combination is refused."""
    sizes = {int(im["id"]): (im.get("width") or 0, im.get("height") or 0) for im in gt.images}
    wh = np.asarray([sizes[i] for i in image_ids.tolist()], dtype=np.float64).reshape(-1, 2)
    known = (wh > 0).all(axis=1)
    if not known.any():
        return
    b, wh = boxes[known], wh[known]
    corner_like = np.all(b[:, 2] >= b[:, 0]) and np.all(b[:, 3] >= b[:, 1])
    far_out = (b[:, 0] + b[:, 2] > 1.1 * wh[:, 0]) | (b[:, 1] + b[:, 3] > 1.1 * wh[:, 1])
    if corner_like and far_out.mean() > 0.1:
        i = int(np.flatnonzero(known)[_first(far_out)])
        raise _fail(
            path,
            i,
            f"bbox {boxes[i].tolist()} looks like [x1, y1, x2, y2] corners: "
            f"{far_out.mean():.0%} of the boxes read as [x, y, w, h] reach past the image border",
            hint="convert boxes to [x, y, w, h]: w = x2 - x1, h = y2 - y1",
        )


def read_predictions(path: str | Path, gt: CocoData, class_map: ClassMap) -> DetectionTable:
    """Read and check a ``predictions.json`` (COCO results) against the ground truth of the evaluated split."""
    path = Path(path)
    return parse_predictions(read_json(path, what="predictions file"), gt, class_map, path)


def write_predictions(path: str | Path, dets: DetectionTable) -> Path:
    """Write ``dets`` as COCO results atomically (original category ids, boxes [x, y, w, h] in pixels)."""
    if len(dets) and not (np.isfinite(dets.scores).all() and np.isfinite(dets.boxes).all()):
        raise DetkitError("refusing to write non-finite scores or boxes", path=path)
    return atomic_write_json(path, dets.to_coco_results(), indent=None)


__all__ = ["read_predictions", "parse_predictions", "write_predictions", "FORMAT_HINT"]
