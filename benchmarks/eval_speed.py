"""COCO box-metric speed: detkit's evaluate_coco (faster-coco-eval, in-memory) vs plain pycocotools.

Synthetic ground truth (5,000 images, a few boxes each) and noisy predictions (100 per image) are generated
here, so nothing is downloaded. Both paths evaluate the same predictions in the same run; the script prints
both times, the ratio and the largest difference between their 12 headline numbers.

    .venv/bin/python benchmarks/eval_speed.py [--images 5000] [--dets 100] [--classes 10]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import time

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData
from detkit.evaluation.coco_metrics import HEADLINE_KEYS, evaluate_coco, gt_dict
from detkit.evaluation.detections import DetectionTable


def synthetic(
    n_images: int, dets_per_image: int, n_classes: int, seed: int = 0
) -> tuple[CocoData, DetectionTable, ClassMap]:
    rng = np.random.default_rng(seed)
    class_map = ClassMap.from_names([f"c{i}" for i in range(n_classes)])
    size = 640.0
    n_gt = rng.integers(1, 11, n_images)
    img_of_gt = np.repeat(np.arange(1, n_images + 1), n_gt)
    m = len(img_of_gt)
    wh = rng.uniform(8, 200, (m, 2))
    xy = rng.uniform(0, size - wh)
    gt_boxes = np.concatenate([xy, wh], axis=1)
    gt_cats = rng.integers(1, n_classes + 1, m)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 640} for i in range(1, n_images + 1)]
    anns = [
        {"id": k + 1, "image_id": int(i), "category_id": int(c), "bbox": b, "area": float(b[2] * b[3]), "iscrowd": 0}
        for k, (i, c, b) in enumerate(zip(img_of_gt.tolist(), gt_cats.tolist(), gt_boxes.tolist()))
    ]
    gt = CocoData(images=images, annotations=anns, categories=class_map.to_coco_categories())

    # predictions: jittered copies of the ground truth (some with a wrong class) plus random boxes
    n = n_images * dets_per_image
    img_of_det = np.repeat(np.arange(1, n_images + 1), dets_per_image)
    first_gt = np.concatenate([[0], np.cumsum(n_gt)[:-1]])
    slot = np.tile(np.arange(dets_per_image), n_images)
    near = slot < 2 * np.repeat(n_gt, dets_per_image)
    src = np.repeat(first_gt, dets_per_image) + slot % np.repeat(n_gt, dets_per_image)
    src_wh = np.tile(gt_boxes[src, 2:], 2)
    boxes = np.where(near[:, None], gt_boxes[src] + rng.normal(0.0, 0.08, (n, 4)) * src_wh, 0.0)
    rwh = rng.uniform(8, 200, (n, 2))
    boxes[~near] = np.concatenate([rng.uniform(0, size - rwh), rwh], axis=1)[~near]
    boxes[:, 2:] = np.abs(boxes[:, 2:])
    cats = np.where(near & (rng.random(n) > 0.1), gt_cats[src], rng.integers(1, n_classes + 1, n))
    scores = np.where(near, rng.uniform(0.3, 1.0, n), rng.uniform(0.0, 0.6, n))
    return gt, DetectionTable(img_of_det, cats, boxes, scores), class_map


def pycocotools_stats(gt: CocoData, dets: DetectionTable, class_map: ClassMap) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt_dict(gt, class_map))
        coco_gt.createIndex()
        results = [  # full-precision boxes, exactly what evaluate_coco sees
            {"image_id": i, "category_id": c, "bbox": b, "score": sc}
            for i, c, b, sc in zip(
                dets.image_ids.tolist(), dets.category_ids.tolist(), dets.boxes.tolist(), dets.scores.tolist()
            )
        ]
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    gt, dets, class_map = synthetic(args.images, args.dets, args.classes)
    print(
        f"{args.images} images, {len(gt.annotations)} ground-truth boxes, {len(dets)} detections, "
        f"{args.classes} classes"
    )

    # ours: best of --repeats runs (the machine may be shared); pycocotools: one run (it is the slow one)
    walls, cpus = [], []
    for _ in range(args.repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        ours = evaluate_coco(gt, dets, class_map)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    w0, c0 = time.perf_counter(), time.process_time()
    ref = pycocotools_stats(gt, dets, class_map)
    ref_wall, ref_cpu = time.perf_counter() - w0, time.process_time() - c0

    ours_stats = np.asarray([-1.0 if ours[k] is None else ours[k] for k in HEADLINE_KEYS])
    print(
        f"detkit evaluate_coco (faster-coco-eval): {min(walls):7.2f} s wall {min(cpus):7.2f} s CPU  "
        f"(best of {args.repeats})  "
        f"AP={ours['AP']:.4f} AP50={ours['AP50']:.4f}"
    )
    print(
        f"pycocotools:                             {ref_wall:7.2f} s wall {ref_cpu:7.2f} s CPU                "
        f"AP={ref[0]:.4f} AP50={ref[1]:.4f}"
    )
    print(
        f"speed-up: {ref_wall / min(walls):.1f}x wall, {ref_cpu / min(cpus):.1f}x CPU   "
        f"max |difference| of the 12 headline numbers: {np.abs(ours_stats - ref).max():.2e}"
    )


if __name__ == "__main__":
    main()
