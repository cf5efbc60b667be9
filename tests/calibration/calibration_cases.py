"""Random detection / ground-truth cases for the calibration tests (generated, never downloaded)."""

from __future__ import annotations

import numpy as np

from detkit.data.coco import CocoData
from detkit.evaluation.detections import DetectionTable

CATEGORY_IDS = (1, 3, 7)


def random_case(
    seed: int,
    n_images: int = 12,
    max_gt: int = 6,
    crowd_rate: float = 0.15,
    dets_per_gt: int = 3,
    extra_dets: int = 4,
    integer_boxes: bool = True,
    coarse_scores: bool = True,
) -> tuple[CocoData, DetectionTable]:
    """Images with a few GT boxes (some crowd), and detections that are jittered copies of GTs plus clutter.

    Integer boxes and coarse scores create exact IoU and score ties, the cases where greedy matchers differ.
    """
    rng = np.random.default_rng(seed)
    images, anns = [], []
    det_img, det_cat, det_box, det_score = [], [], [], []
    for img_id in range(1, n_images + 1):
        w, h = int(rng.integers(64, 160)), int(rng.integers(64, 160))
        images.append({"id": img_id * 10, "file_name": f"{img_id}.jpg", "width": w, "height": h})
        for _ in range(int(rng.integers(0, max_gt + 1))):
            bw, bh = rng.integers(4, w // 2), rng.integers(4, h // 2)
            x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
            box = [float(x), float(y), float(bw), float(bh)]
            cat = int(rng.choice(CATEGORY_IDS))
            crowd = int(rng.random() < crowd_rate)
            anns.append({"id": len(anns) + 1, "image_id": img_id * 10, "category_id": cat, "bbox": box,
                         "area": float(bw * bh), "iscrowd": crowd})
            for _ in range(int(rng.integers(0, dets_per_gt + 1))):
                exact = rng.random() < 0.2  # exact copies: IoU exactly 1, and IoU ties between detections
                jitter = 0.0 if exact else rng.normal(0, 0.15, 4) * np.array([bw, bh, bw, bh])
                b = np.array(box) + jitter
                if integer_boxes:
                    b = np.round(b)
                b[2:] = np.maximum(b[2:], 1)
                keep_cat = rng.random() < 0.85
                det_img.append(img_id * 10)
                det_cat.append(cat if keep_cat else int(rng.choice(CATEGORY_IDS)))
                det_box.append(b)
                det_score.append(rng.random())
        for _ in range(int(rng.integers(0, extra_dets + 1))):
            bw, bh = rng.integers(2, w // 2), rng.integers(2, h // 2)
            b = np.array([rng.integers(0, w - bw), rng.integers(0, h - bh), bw, bh], dtype=float)
            det_img.append(img_id * 10)
            det_cat.append(int(rng.choice(CATEGORY_IDS)))
            det_box.append(b)
            det_score.append(rng.random())
    scores = np.asarray(det_score)
    if coarse_scores:
        scores = np.round(scores * 10) / 10
    cats = [{"id": c, "name": f"c{c}"} for c in CATEGORY_IDS]
    gt = CocoData(images=images, annotations=anns, categories=cats)
    dets = DetectionTable(np.asarray(det_img), np.asarray(det_cat), np.asarray(det_box).reshape(-1, 4), scores)
    return gt, dets


def pycocotools_matches(gt: CocoData, dets: DetectionTable, iou: float, max_dets: int, use_cats: bool = True):
    """(tp, ignored, kept, matched annotation id) per detection row from pycocotools' own COCOeval."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt.to_dict()
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets.to_coco_results()) if len(dets) else COCO()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.iouThrs = np.array([iou])
        ev.params.areaRng = [[0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.params.maxDets = [max_dets]
        ev.params.useCats = int(use_cats)
        ev.evaluate()
    n = len(dets)
    tp = np.zeros(n, bool)
    ignored = np.zeros(n, bool)
    kept = np.zeros(n, bool)
    matched = np.zeros(n, np.int64)
    for e in ev.evalImgs:
        if e is None:
            continue
        for k, did in enumerate(e["dtIds"]):
            row = did - 1  # loadRes numbers detections 1..N in input order
            kept[row] = True
            m = int(e["dtMatches"][0, k])
            ig = bool(e["dtIgnore"][0, k])
            matched[row] = m
            ignored[row] = ig
            tp[row] = m > 0 and not ig
    return tp, ignored, kept, matched
