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
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id * 10,
                    "category_id": cat,
                    "bbox": box,
                    "area": float(bw * bh),
                    "iscrowd": crowd,
                }
            )
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


def overconfident_split(
    seed: int,
    n_images: int = 150,
    category_ids: tuple[int, ...] = CATEGORY_IDS,
    strength: float = 2.5,
    shift: float = 1.5,
) -> tuple[CocoData, DetectionTable]:
    """A detector whose scores are over-confident: sigmoid(strength * logit(quality) + shift).

    Each GT gets a detection jittered so its IoU varies; quality is that IoU plus noise. Clutter detections
    (false positives) have low quality. Different seeds give independent splits of the same "detector".
    """
    rng = np.random.default_rng(seed)
    images, anns = [], []
    img_col, cat_col, box_col, q_col = [], [], [], []
    for i in range(n_images):
        img_id = seed * 100_000 + i + 1
        images.append({"id": img_id, "file_name": f"{img_id}.jpg", "width": 200, "height": 200})
        for _ in range(int(rng.integers(1, 5))):
            bw, bh = rng.uniform(20, 80, 2)
            x, y = rng.uniform(0, 200 - bw), rng.uniform(0, 200 - bh)
            cat = int(rng.choice(category_ids))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cat,
                    "bbox": [x, y, bw, bh],
                    "area": float(bw * bh),
                    "iscrowd": 0,
                }
            )
            if rng.random() < 0.85:
                sigma = rng.uniform(0.0, 0.35)
                b = np.array([x, y, bw, bh]) + rng.normal(0, sigma, 4) * np.array([bw, bh, bw, bh])
                b[2:] = np.maximum(b[2:], 2.0)
                img_col.append(img_id)
                cat_col.append(cat)
                box_col.append(b)
                q_col.append(np.clip(1.0 - 2.2 * sigma + rng.normal(0, 0.08), 0.02, 0.98))
        for _ in range(int(rng.integers(0, 4))):
            bw, bh = rng.uniform(10, 60, 2)
            img_col.append(img_id)
            cat_col.append(int(rng.choice(category_ids)))
            box_col.append(np.array([rng.uniform(0, 200 - bw), rng.uniform(0, 200 - bh), bw, bh]))
            q_col.append(rng.uniform(0.01, 0.35))
    q = np.asarray(q_col)
    z = np.log(q) - np.log1p(-q)
    scores = 1.0 / (1.0 + np.exp(-(strength * z + shift)))
    cats = [{"id": c, "name": f"class{c}"} for c in category_ids]
    gt = CocoData(images=images, annotations=anns, categories=cats)
    return gt, DetectionTable(np.asarray(img_col), np.asarray(cat_col), np.asarray(box_col).reshape(-1, 4), scores)


def write_dataset(root, splits: dict):
    """A dataset.yaml with the given ``{split: CocoData}`` (empty image folders: predictions files only)."""
    from pathlib import Path

    import yaml

    from detkit.data.coco import write_coco

    root = Path(root)
    first = next(iter(splits.values()))
    classes = [{"name": c["name"], "id": c["id"]} for c in sorted(first.categories, key=lambda c: c["id"])]
    entries = {}
    for name, coco in splits.items():
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
        write_coco(root / "annotations" / f"{name}.json", coco)
        entries[name] = {"images": f"images/{name}", "annotations": f"annotations/{name}.json"}
    (root / "dataset.yaml").write_text(
        yaml.safe_dump({"detkit_dataset": 1, "name": "toy", "classes": classes, "splits": entries})
    )
    return root / "dataset.yaml"


def detr_shaped_split(
    seed: int, n_images: int = 80, queries: int = 100, category_ids: tuple[int, ...] = CATEGORY_IDS, size: int = 256
) -> tuple[CocoData, DetectionTable]:
    """Detections shaped like a DETR's output: ``queries`` per image, most of them low-scoring background.

    Per ground-truth box one "main" query (IoU varies with a random jitter) scored over-confidently,
    sigmoid(2 logit(quality) + 1); 0-3 duplicates of it (lower IoU, a fraction of its score, sometimes
    another class); the rest of the queries are background boxes of random classes with scores drawn from
    Beta(0.6, 12) (mean ~0.05, a thin tail up to ~0.4). Different seeds are independent splits of one "detector".
    """
    rng = np.random.default_rng(seed)
    images, anns = [], []
    img_col, cat_col, box_col, score_col = [], [], [], []

    def squash(q: np.ndarray, a: float, b: float) -> np.ndarray:
        q = np.clip(q, 1e-4, 1 - 1e-4)
        return 1.0 / (1.0 + np.exp(-(a * (np.log(q) - np.log1p(-q)) + b)))

    for i in range(n_images):
        img_id = seed * 100_000 + i + 1
        images.append({"id": img_id, "file_name": f"{img_id}.jpg", "width": size, "height": size})
        n_gt = int(rng.integers(1, 7))
        wh = rng.uniform(0.08, 0.4, (n_gt, 2)) * size
        xy = rng.uniform(0, 1, (n_gt, 2)) * (size - wh)
        gt_boxes = np.concatenate([xy, wh], axis=1)
        cats = rng.choice(category_ids, n_gt)
        for b, c in zip(gt_boxes, cats):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": int(c),
                    "bbox": b.tolist(),
                    "area": float(b[2] * b[3]),
                    "iscrowd": 0,
                }
            )
        found = rng.random(n_gt) < 0.9
        sigma = rng.uniform(0.0, 0.3, n_gt)
        main = gt_boxes + rng.normal(0, 1, (n_gt, 4)) * sigma[:, None] * np.c_[wh, wh]
        main[:, 2:] = np.maximum(main[:, 2:], 2.0)
        quality = np.clip(1.0 - 2.0 * sigma + rng.normal(0, 0.1, n_gt), 0.02, 0.98)
        main_score = squash(quality, 2.0, 1.0)
        n_dup = rng.integers(0, 4, n_gt)
        dup_src = np.repeat(np.arange(n_gt), n_dup)
        dups = gt_boxes[dup_src] + rng.normal(0, 0.35, (len(dup_src), 4)) * np.c_[wh, wh][dup_src]
        dups[:, 2:] = np.maximum(dups[:, 2:], 2.0)
        dup_cat = np.where(rng.random(len(dup_src)) < 0.8, cats[dup_src], rng.choice(category_ids, len(dup_src)))
        dup_score = main_score[dup_src] * rng.uniform(0.15, 0.7, len(dup_src))
        n_bg = max(queries - int(found.sum()) - len(dup_src), 0)
        bg_wh = rng.uniform(0.05, 0.5, (n_bg, 2)) * size
        bg = np.concatenate([rng.uniform(0, 1, (n_bg, 2)) * (size - bg_wh), bg_wh], axis=1)
        boxes = np.concatenate([main[found], dups, bg])
        img_col.append(np.full(len(boxes), img_id))
        cat_col.append(np.concatenate([cats[found], dup_cat, rng.choice(category_ids, n_bg)]))
        box_col.append(boxes)
        score_col.append(np.concatenate([main_score[found], dup_score, rng.beta(0.6, 12, n_bg)]))
    cats_json = [{"id": c, "name": f"class{c}"} for c in category_ids]
    gt = CocoData(images=images, annotations=anns, categories=cats_json)
    dets = DetectionTable(
        np.concatenate(img_col), np.concatenate(cat_col), np.concatenate(box_col), np.concatenate(score_col)
    )
    return gt, dets
