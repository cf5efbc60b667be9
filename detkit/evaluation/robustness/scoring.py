"""Score a detector on one image set: the shared inference + COCO metrics path, in percent units."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData
from detkit.errors import DetkitError

Calibration = Callable[[Any, CocoData], dict[str, Any]]


def score_images(
    detector: Any,
    coco: CocoData,
    images_dir: Path,
    class_map: ClassMap,
    batch_size: int,
    source: str | Path,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """AP and AP50 (percent) of ``detector`` on the images of ``coco`` found in ``images_dir``; with
    ``calibration(detections, coco)`` also its result under ``"calibration"`` (same detections, no second pass).

    Inference is :func:`detkit.evaluation.inference.predict_split` and the metrics are
    :func:`detkit.evaluation.coco_metrics.evaluate_coco` (COCO AP@[.5:.95], area all, 100 detections),
    the same path as the clean evaluation, so clean and shifted numbers are comparable.
    """
    from detkit.evaluation.coco_metrics import evaluate_coco
    from detkit.evaluation.inference import predict_split

    dets = predict_split(detector, (coco, images_dir), batch_size=batch_size)
    metrics = evaluate_coco(coco, dets, class_map)
    if metrics["AP"] is None:
        raise DetkitError(
            "no ground-truth boxes to evaluate against (AP is undefined)",
            hint="every evaluated set needs annotations",
            path=source,
        )
    out: dict[str, Any] = {
        "AP": 100.0 * metrics["AP"],
        "AP50": 100.0 * (metrics["AP50"] or 0.0),
        "num_detections": int(len(dets)),
    }
    if calibration is not None:
        out["calibration"] = calibration(dets, coco)
    return out
