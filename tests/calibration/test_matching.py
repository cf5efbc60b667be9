"""The shared matcher against pycocotools' COCOeval (dtMatches / dtIgnore) on random cases with ties."""

from __future__ import annotations

import numpy as np
import pytest
from calibration_cases import pycocotools_matches, random_case

from detkit.data.coco import CocoData
from detkit.errors import DetkitError
from detkit.evaluation.detections import DetectionTable
from detkit.evaluation.matching import match_detections


def _check_parity(gt, dets, iou, max_dets, agnostic=False):
    res = match_detections(dets, gt, iou, max_dets=max_dets, class_agnostic=agnostic)
    tp, ignored, kept, matched = pycocotools_matches(gt, dets, iou, max_dets, use_cats=not agnostic)
    np.testing.assert_array_equal(res.kept, kept)
    np.testing.assert_array_equal(res.tp, tp)
    np.testing.assert_array_equal(res.ignored & res.kept, ignored & kept)
    ann_ids = np.asarray([a["id"] for a in gt.annotations] + [0])
    ours = ann_ids[res.gt_index]  # gt_index -1 -> id 0 (pycocotools' "unmatched")
    np.testing.assert_array_equal(ours[res.kept], matched[res.kept])
    return res


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou", [0.0, 0.1, 0.5, 0.75, 1.0])
def test_matches_pycocotools(seed, iou):
    gt, dets = random_case(seed)
    res = _check_parity(gt, dets, iou, max_dets=100)
    assert 0 < res.tp.sum() < len(dets)


@pytest.mark.parametrize("seed", range(3))
def test_max_dets_truncation_and_class_agnostic(seed):
    gt, dets = random_case(100 + seed, dets_per_gt=5, extra_dets=6)
    res = _check_parity(gt, dets, 0.5, max_dets=2)
    assert not res.kept.all()
    _check_parity(gt, dets, 0.5, max_dets=100, agnostic=True)
    _check_parity(gt, dets, 0.0, max_dets=3, agnostic=True)


def test_tau_zero_pairs_regular_gts_first_then_crowd_then_fp():
    gt = CocoData(
        images=[{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        annotations=[
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "area": 1600, "iscrowd": 1},
        ],
        categories=[{"id": 1, "name": "a"}],
    )
    # Three detections far from the regular GT; the second and third overlap the crowd region.
    dets = DetectionTable(
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [[80, 0, 5, 5], [60, 60, 10, 10], [55, 55, 10, 10], [0, 90, 5, 5]],
        [0.9, 0.8, 0.7, 0.6],
    )
    res = match_detections(dets, gt, 0.0)
    assert res.tp.tolist() == [True, False, False, False]
    assert res.iou[0] == 0.0  # an IoU-0 "TP": it consumes the GT
    assert res.ignored.tolist() == [False, True, True, True]  # at tau = 0 any detection falls onto the crowd GT
    np.testing.assert_allclose(res.iou[1:3], [1.0, 1.0])  # crowd IoU = intersection / detection area
    assert res.num_gt.tolist() == [1]
    assert res.fn_gt.tolist() == [False, False]

    res5 = match_detections(dets, gt, 0.5)
    assert res5.tp.tolist() == [False] * 4
    assert res5.ignored.tolist() == [False, True, True, False]
    assert res5.fp.tolist() == [True, False, False, True]
    assert res5.fn_gt.tolist() == [True, False]


def test_empty_inputs():
    gt, _ = random_case(0)
    res = match_detections(DetectionTable.empty(), gt, 0.5)
    assert len(res.tp) == 0 and res.num_gt.sum() == sum(1 for a in gt.annotations if not a["iscrowd"])
    empty_gt = CocoData(images=gt.images, annotations=[], categories=gt.categories)
    _, dets = random_case(0)
    res = match_detections(dets, empty_gt, 0.5)
    assert not res.tp.any() and res.kept.any()


def test_bad_inputs_name_the_problem():
    gt, dets = random_case(1)
    bad_img = DetectionTable(dets.image_ids + 1, dets.category_ids, dets.boxes, dets.scores)
    with pytest.raises(DetkitError, match="image ids"):
        match_detections(bad_img, gt, 0.5)
    bad_cat = DetectionTable(dets.image_ids, np.full(len(dets), 99), dets.boxes, dets.scores)
    with pytest.raises(DetkitError, match=r"category ids \[99\]"):
        match_detections(bad_cat, gt, 0.5)
    nan_scores = dets.scores.copy()
    nan_scores[2] = np.nan
    with pytest.raises(DetkitError, match="row 2"):
        match_detections(dets.with_scores(nan_scores), gt, 0.5)
    with pytest.raises(DetkitError, match="IoU threshold"):
        match_detections(dets, gt, 1.5)


def test_memory_chunking_is_exact(monkeypatch):
    import detkit.evaluation.matching as matching

    gt, dets = random_case(7, n_images=20, dets_per_gt=5)
    for tau in (0.0, 0.5):
        whole = match_detections(dets, gt, tau)
        monkeypatch.setattr(matching, "_PAIR_CHUNK", 7)  # splits groups across chunks
        chunked = match_detections(dets, gt, tau)
        monkeypatch.undo()
        for field in ("tp", "ignored", "kept", "iou", "gt_index", "gt_det_index"):
            np.testing.assert_array_equal(getattr(whole, field), getattr(chunked, field), err_msg=field)
