"""Batched inference over a dataset split with any detector that has ``.predict_table(images, image_ids)``.

Works for the PyTorch :class:`detkit.api.Detector` and for exported (ONNX) detectors alike. Images are decoded
with the one pre-processing implementation (:func:`detkit.data.images.load_image`); the next batch is
decoded in a background thread while the detector runs on the current one.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from detkit.data.coco import CocoData, image_file, read_coco
from detkit.data.dataset import SplitSpec
from detkit.errors import DetkitError
from detkit.evaluation.detections import DetectionTable
from detkit.utils.progress import ProgressTask


class TableDetector(Protocol):
    def predict_table(self, images: Sequence[Any], image_ids: Sequence[int], conf: float = 0.0) -> DetectionTable: ...


SplitLike = SplitSpec | tuple[CocoData | str | Path, str | Path]


def split_data(split: SplitLike) -> tuple[CocoData, Path, Path | str]:
    """``(coco, images_dir, annotations_source)`` of a :class:`SplitSpec` or a ``(coco or path, images_dir)`` pair."""
    if isinstance(split, SplitSpec):
        return read_coco(split.annotations), Path(split.images), split.annotations
    try:
        coco, images_dir = split
    except (TypeError, ValueError):
        raise TypeError("split must be a SplitSpec or a (coco, images_dir) pair") from None
    if isinstance(coco, CocoData):
        return coco, Path(images_dir), "annotations"
    return read_coco(coco), Path(images_dir), coco


def image_paths(coco: CocoData, images_dir: Path, source: Path | str) -> tuple[list[Path], np.ndarray]:
    """Every image of the split (COCO order) as a checked path inside ``images_dir``, with its id."""
    paths = [image_file(images_dir, im["file_name"], source) for im in coco.images]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DetkitError(
            f"image file not found: {missing[0]}{more}", hint="check the split's images folder", path=source
        )
    return paths, np.asarray([int(im["id"]) for im in coco.images], dtype=np.int64)


def _load_batch(paths: Sequence[Path]) -> list[np.ndarray]:
    from detkit.data.images import load_image

    return [load_image(p) for p in paths]


def predict_split(detector: TableDetector, split: SplitLike, batch_size: int = 8, conf: float = 0.0) -> DetectionTable:
    """Run ``detector`` over every image of ``split`` and return all detections (original category ids).

    ``split`` is a :class:`SplitSpec` (``dataset.split("val")``) or a ``(coco, images_dir)`` pair where
    ``coco`` is a :class:`CocoData` or the path of a COCO JSON file.
    """
    if batch_size < 1:
        raise DetkitError(f"batch size must be at least 1, got {batch_size}")
    coco, images_dir, source = split_data(split)
    paths, ids = image_paths(coco, images_dir, source)
    starts = list(range(0, len(paths), batch_size))
    tables: list[DetectionTable] = []
    progress = ProgressTask("inference", total=len(paths))
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_load_batch, paths[0:batch_size]) if starts else None
            for n, start in enumerate(starts):
                images = pending.result()
                if n + 1 < len(starts):
                    nxt = starts[n + 1]
                    pending = pool.submit(_load_batch, paths[nxt : nxt + batch_size])
                batch_ids = ids[start : start + batch_size]
                tables.append(detector.predict_table(images, batch_ids.tolist(), conf=conf))
                progress.advance(len(batch_ids))
    finally:
        progress.close()
    return DetectionTable.concat(tables)
