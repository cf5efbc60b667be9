"""COCO box metrics (AP, AP50, AP75, S/M/L, AR, per-class AP) through faster-coco-eval.

The ground truth and the detections are handed to faster-coco-eval as in-memory dicts (no JSON round trip,
no ``loadRes``, which would add a segmentation polygon to every detection), and its single C++ call that
evaluates and accumulates at once is used. The numbers are those of pycocotools (tested to 1e-6).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, read_coco
from detkit.evaluation.detections import DetectionTable

# Order of faster-coco-eval's ``stats`` for bbox with the default area ranges and maxDets [1, 10, 100].
HEADLINE_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

_quiet = logging.getLogger("detkit.coco_metrics.silent").debug


def gt_dict(gt: CocoData, class_map: ClassMap) -> dict[str, Any]:
    """The ground truth as a fresh COCO dict that COCO evaluators may annotate in place.

    Annotation ids are renumbered 1..N (COCO evaluators use id 0 as "unmatched"), ``area`` defaults to
    w*h and ``iscrowd`` to 0; categories come from the class map so every class is evaluated.
    """
    images = [{"id": int(im["id"]), "width": im.get("width") or 0, "height": im.get("height") or 0} for im in gt.images]
    anns = []
    for i, a in enumerate(gt.annotations, start=1):
        x, y, w, h = (float(v) for v in a["bbox"])
        area = a.get("area")
        anns.append(
            {
                "id": i,
                "image_id": int(a["image_id"]),
                "category_id": int(a["category_id"]),
                "bbox": [x, y, w, h],
                "area": float(area) if area is not None else w * h,
                "iscrowd": int(a.get("iscrowd", 0) or 0),
            }
        )
    return {"images": images, "annotations": anns, "categories": class_map.to_coco_categories()}


def detection_dicts(dets: DetectionTable) -> list[dict[str, Any]]:
    """Detections as COCO annotation dicts with what ``loadRes`` would add for boxes (id, area, iscrowd)."""
    boxes = dets.boxes.tolist()
    areas = (dets.boxes[:, 2] * dets.boxes[:, 3]).tolist()
    return [
        {"id": n, "image_id": i, "category_id": c, "bbox": b, "score": s, "area": a, "iscrowd": 0}
        for n, (i, c, b, s, a) in enumerate(
            zip(dets.image_ids.tolist(), dets.category_ids.tolist(), boxes, dets.scores.tolist(), areas), start=1
        )
    ]


def _as_coco_data(gt: CocoData | str | Path) -> CocoData:
    return gt if isinstance(gt, CocoData) else read_coco(gt)


def _mean_valid(a: np.ndarray) -> float | None:
    valid = a[a > -1]
    return float(valid.mean()) if valid.size else None


def evaluate_coco(gt: CocoData | str | Path, dets: DetectionTable, class_map: ClassMap) -> dict[str, Any]:
    """COCO box evaluation of ``dets`` against ``gt`` over the classes of ``class_map``.

    Returns a dict with the headline metrics (:data:`HEADLINE_KEYS`, fractions in [0, 1]; ``None`` where
    COCO leaves a metric undefined, e.g. APs without small objects), ``per_class`` (one entry per class in
    model order: name, category_id, num_gt, AP, AP50, AP75), counts, and ``precision``: a numpy array
    ``[T=10 IoU thresholds, R=101 recall points, K classes]`` (area all, 100 detections; -1 where a class has
    no ground truth) with ``iou_thresholds`` and ``recall_thresholds`` for PR curves. Use
    :func:`metrics_for_json` to drop the arrays before writing JSON.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    data = _as_coco_data(gt)
    coco_gt = COCO(gt_dict(data, class_map), print_function=_quiet)
    coco_dt = COCO(print_function=_quiet)
    coco_dt.dataset = {
        "images": coco_gt.dataset["images"],
        "annotations": detection_dicts(dets),
        "categories": coco_gt.dataset["categories"],
    }
    coco_dt.createIndex()

    ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=_quiet, extra_calc=False, separate_eval=False)
    ev.params.imgIds = sorted(coco_gt.getImgIds())
    ev.params.catIds = sorted(class_map.category_ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()

    stats = np.asarray(ev.stats, dtype=np.float64)[: len(HEADLINE_KEYS)]
    out: dict[str, Any] = {k: (None if v < 0 else float(v)) for k, v in zip(HEADLINE_KEYS, stats.tolist())}

    # precision: [T, R, K, A, M]; area "all" = 0, maxDets 100 = last
    precision = np.asarray(ev.eval["precision"], dtype=np.float64)[:, :, :, 0, -1]
    iou_thrs = np.asarray(ev.params.iouThrs, dtype=np.float64)
    t50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
    t75 = int(np.argmin(np.abs(iou_thrs - 0.75)))
    sorted_ids = sorted(class_map.category_ids)
    column = {cid: k for k, cid in enumerate(sorted_ids)}
    crowd = np.asarray([a.get("iscrowd", 0) or 0 for a in data.annotations], dtype=bool)
    gt_cats = np.asarray([a["category_id"] for a in data.annotations], dtype=np.int64)
    per_class = []
    for name, cid in zip(class_map.names, class_map.category_ids):
        p = precision[:, :, column[cid]]
        per_class.append(
            {
                "name": name,
                "category_id": int(cid),
                "num_gt": int(np.count_nonzero((gt_cats == cid) & ~crowd)),
                "AP": _mean_valid(p),
                "AP50": _mean_valid(p[t50]),
                "AP75": _mean_valid(p[t75]),
            }
        )
    order = [column[cid] for cid in class_map.category_ids]  # model order
    out["per_class"] = per_class
    out["num_images"] = len(data.images)
    out["num_gt"] = int(np.count_nonzero(~crowd))
    out["num_detections"] = len(dets)
    out["precision"] = precision[:, :, order]
    out["iou_thresholds"] = iou_thrs
    out["recall_thresholds"] = np.asarray(ev.params.recThrs, dtype=np.float64)
    return out


def metrics_for_json(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics without numpy arrays (what ``metrics.json`` stores)."""
    return {k: v for k, v in metrics.items() if not isinstance(v, np.ndarray)}
