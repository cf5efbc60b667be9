"""COCO metrics: faster-coco-eval on in-memory dicts must give pycocotools' numbers."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, write_coco
from detkit.evaluation.coco_metrics import HEADLINE_KEYS, evaluate_coco, gt_dict, metrics_for_json
from detkit.evaluation.detections import DetectionTable


def _dataset(seed: int = 0, n_images: int = 40):
    """Boxes of all three COCO sizes, crowd boxes, annotation id 0, a class without ground truth."""
    rng = np.random.default_rng(seed)
    class_map = ClassMap(("a", "b", "c", "unused"), (3, 7, 11, 20))
    images, anns, det_rows = [], [], []
    ann_id = 0
    for img_id in range(1, n_images + 1):
        images.append({"id": img_id, "file_name": f"{img_id}.png", "width": 400, "height": 300})
        for _ in range(rng.integers(0, 6)):
            w, h = rng.choice([10, 50, 150]) * rng.uniform(0.7, 1.3, 2)
            x, y = rng.uniform(0, 400 - w), rng.uniform(0, 300 - h)
            cat = int(rng.choice([3, 7, 11]))
            crowd = int(rng.random() < 0.05)
            anns.append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h * 0.9,
                    "iscrowd": crowd,
                }
            )
            ann_id += 1
            for _ in range(rng.integers(0, 3)):  # jittered hits, sometimes with the wrong class
                box = np.array([x, y, w, h]) + rng.normal(0, 0.12 * min(w, h), 4)
                box[2:] = np.abs(box[2:]) + 1
                det_rows.append(
                    (img_id, cat if rng.random() > 0.15 else int(rng.choice([3, 7, 11])), *box, round(rng.random(), 2))
                )
        for _ in range(rng.integers(0, 4)):  # background false positives
            w, h = rng.uniform(5, 120, 2)
            det_rows.append(
                (
                    img_id,
                    int(rng.choice([3, 7, 11])),
                    rng.uniform(0, 300),
                    rng.uniform(0, 200),
                    w,
                    h,
                    round(rng.random(), 2),
                )
            )
    gt = CocoData(images=images, annotations=anns, categories=class_map.to_coco_categories())
    rows = np.asarray(det_rows, dtype=np.float64)
    dets = DetectionTable(rows[:, 0], rows[:, 1], rows[:, 2:6], rows[:, 6])  # scores rounded: ties on purpose
    return gt, dets, class_map


def _pycocotools(gt, dets, class_map):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt_dict(gt, class_map))
        coco_gt.createIndex()
        results = [  # full precision, exactly what evaluate_coco sees
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
    return ev


@pytest.mark.parametrize("seed", [0, 1])
def test_same_numbers_as_pycocotools(seed):
    gt, dets, class_map = _dataset(seed)
    ours = evaluate_coco(gt, dets, class_map)
    ref = _pycocotools(gt, dets, class_map)

    got = np.array([-1.0 if ours[k] is None else ours[k] for k in HEADLINE_KEYS])
    np.testing.assert_allclose(got, ref.stats, atol=1e-6, rtol=0)
    assert 0.05 < ours["AP"] < 0.95  # a meaningful, non-trivial case

    # per-class AP from pycocotools' precision array (K in sorted category-id order)
    ref_prec = ref.eval["precision"][:, :, :, 0, -1]
    sorted_ids = sorted(class_map.category_ids)
    for entry in ours["per_class"]:
        p = ref_prec[:, :, sorted_ids.index(entry["category_id"])]
        expected = p[p > -1].mean() if (p > -1).any() else None
        if expected is None:
            assert entry["AP"] is None and entry["num_gt"] == 0
        else:
            assert entry["AP"] == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(ours["precision"][:, :, 0], ref_prec[:, :, sorted_ids.index(3)], atol=1e-6)


def test_reads_ground_truth_from_a_file_and_keeps_model_order(tmp_path):
    gt, dets, class_map = _dataset(0, n_images=10)
    write_coco(tmp_path / "val.json", gt)
    from_file = evaluate_coco(tmp_path / "val.json", dets, class_map)
    in_memory = evaluate_coco(gt, dets, class_map)
    assert from_file["AP"] == in_memory["AP"]
    assert [c["name"] for c in from_file["per_class"]] == list(class_map.names)
    assert from_file["precision"].shape == (10, 101, len(class_map))


def test_perfect_and_empty_predictions():
    gt, _, class_map = _dataset(0, n_images=10)
    keep = [a for a in gt.annotations if not a["iscrowd"]]
    perfect = DetectionTable(
        [a["image_id"] for a in keep],
        [a["category_id"] for a in keep],
        [a["bbox"] for a in keep],
        np.linspace(1, 0.5, len(keep)),
    )
    assert evaluate_coco(gt, perfect, class_map)["AP"] == pytest.approx(1.0)
    empty = evaluate_coco(gt, DetectionTable.empty(), class_map)
    assert empty["AP"] == 0.0 and empty["AR100"] == 0.0
    assert empty["num_detections"] == 0


def test_ground_truth_is_not_modified_and_json_has_no_arrays():
    gt, dets, class_map = _dataset(0, n_images=5)
    before = copy.deepcopy(gt.annotations)
    m = evaluate_coco(gt, dets, class_map)
    assert gt.annotations == before
    import json

    json.dumps(metrics_for_json(m), allow_nan=False)
    assert "precision" not in metrics_for_json(m)
