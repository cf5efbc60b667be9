"""The one detection <-> ground-truth matcher: pycocotools' greedy rules, vectorised with numpy.

Rules (COCO ``evaluateImg`` with area range "all"), applied per (image, class) group, or per image when
``class_agnostic``:

1. Only the top ``max_dets`` detections of a group by score are evaluated (stable order on ties, as
   pycocotools' mergesort); the rest have ``kept = False`` and count as nothing.
2. Ground truth with ``iscrowd = 1`` is *ignored*; non-ignored GTs are visited first.
3. Detections are visited in descending score. Each takes the still-unmatched regular GT with the highest
   IoU such that IoU >= min(tau, 1 - 1e-10) (inclusive); among equal IoUs the later GT wins, as in
   pycocotools. Only if no regular GT qualifies may it fall onto a crowd GT (best IoU, same tie rule).
   Crowd GTs may be matched any number of times.
4. Crowd IoU is intersection / area(detection); boxes that do not overlap have IoU 0.
5. Outcome per detection: TP (matched a regular GT; ``iou`` is that IoU), ignored (matched a crowd GT;
   neither TP nor FP), FP (unmatched).

With tau = 0 every IoU qualifies, so the top detections of a group are paired one-to-one with the
regular GTs even at IoU 0 (a "TP" with IoU 0), the next fall onto crowd GTs (ignored), and only the rest
are FPs. This is intended: it is what the calibration papers' code does (docs/calibration.md).

Vectorisation: IoUs are computed for every (detection, GT) pair of the same group at once; the greedy
loop then runs over detection *rank* (at most ``max_dets`` steps), handling rank r of every group in one
array operation, since groups share no GT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detkit.data.coco import CocoData
from detkit.errors import DetkitError
from detkit.evaluation.detections import DetectionTable

_MAX_IOU_THRESHOLD = 1.0 - 1e-10
_PAIR_CHUNK = 4_000_000  # (detection, GT) pairs held in memory at once


@dataclass
class MatchResult:
    """Per-detection outcome of :func:`match_detections` (arrays aligned with the input table's rows)."""

    tp: np.ndarray  # bool [N]: matched a regular (non-crowd) GT
    ignored: np.ndarray  # bool [N]: matched a crowd GT (neither TP nor FP)
    kept: np.ndarray  # bool [N]: within the top max_dets of its group (others are not evaluated at all)
    iou: np.ndarray  # float64 [N]: IoU with the matched GT (TP or crowd), 0 when unmatched
    gt_index: np.ndarray  # int64 [N]: index into gt.annotations of the matched GT, -1 when unmatched
    gt_det_index: np.ndarray  # int64 [G]: per annotation, the detection row it matched (-1 if none)
    gt_ignored: np.ndarray  # bool [G]: per annotation, crowd (ignored) or of an unknown category
    category_ids: np.ndarray  # int64 [C]: the dataset's categories, sorted by id
    num_gt: np.ndarray  # int64 [C]: non-ignored GT count per category (aligned with category_ids)
    iou_threshold: float
    max_dets: int
    class_agnostic: bool

    @property
    def valid(self) -> np.ndarray:
        """Detections that count as TP or FP: kept and not ignored."""
        return self.kept & ~self.ignored

    @property
    def fp(self) -> np.ndarray:
        return self.valid & ~self.tp

    @property
    def fn_gt(self) -> np.ndarray:
        """bool [G]: regular GTs no detection matched (false negatives)."""
        return ~self.gt_ignored & (self.gt_det_index < 0)

    def settings(self) -> dict:
        """The matching rule in words and numbers, for artifacts that must say how they were computed."""
        return {
            "rule": "coco-greedy",
            "iou_threshold": float(self.iou_threshold),
            "iou_comparison": "iou >= min(tau, 1-1e-10)",
            "max_dets_per_image_class": int(self.max_dets) if not self.class_agnostic else None,
            "max_dets_per_image": int(self.max_dets) if self.class_agnostic else None,
            "class_agnostic": bool(self.class_agnostic),
            "crowd": "ignored (matched repeatedly, IoU = intersection / detection area)",
        }


def box_iou_xywh(det: np.ndarray, gt: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """Element-wise IoU of paired COCO ``[x, y, w, h]`` boxes (pycocotools' definition, crowd aware)."""
    dx2 = det[:, 0] + det[:, 2]
    dy2 = det[:, 1] + det[:, 3]
    gx2 = gt[:, 0] + gt[:, 2]
    gy2 = gt[:, 1] + gt[:, 3]
    iw = np.minimum(dx2, gx2) - np.maximum(det[:, 0], gt[:, 0])
    ih = np.minimum(dy2, gy2) - np.maximum(det[:, 1], gt[:, 1])
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    det_area = det[:, 2] * det[:, 3]
    union = np.where(gt_crowd, det_area, det_area + gt[:, 2] * gt[:, 3] - inter)
    out = np.zeros(len(det), dtype=np.float64)
    np.divide(inter, union, out=out, where=overlap & (union > 0))
    return out


def _gt_arrays(gt: CocoData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    anns = gt.annotations
    if not anns:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, bool)
    image_ids = np.fromiter((a["image_id"] for a in anns), dtype=np.int64, count=len(anns))
    cat_ids = np.fromiter((a["category_id"] for a in anns), dtype=np.int64, count=len(anns))
    crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), dtype=bool, count=len(anns))
    return image_ids, cat_ids, gt.boxes_array(), crowd


def _index_of(values: np.ndarray, known_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``values`` in the sorted array ``known_sorted`` and whether each was found."""
    if len(known_sorted) == 0:
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    pos = np.clip(np.searchsorted(known_sorted, values), 0, len(known_sorted) - 1)
    return pos, known_sorted[pos] == values


def _check_detections(dets: DetectionTable, image_found: np.ndarray, cat_found: np.ndarray) -> None:
    if not np.all(image_found):
        bad = sorted(set(dets.image_ids[~image_found].tolist()))[:5]
        raise DetkitError(
            f"detections refer to image ids {bad} that are not in the ground truth",
            hint="predictions and annotations must come from the same split",
        )
    if not np.all(cat_found):
        bad = sorted(set(dets.category_ids[~cat_found].tolist()))[:5]
        raise DetkitError(
            f"detections have category ids {bad} that are not in the ground truth categories",
            hint="predictions must use the dataset's original category ids",
        )
    if not np.all(np.isfinite(dets.scores)):
        row = int(np.flatnonzero(~np.isfinite(dets.scores))[0])
        raise DetkitError(f"detection row {row} (image id {int(dets.image_ids[row])}) has a non-finite score")
    if not np.all(np.isfinite(dets.boxes)):
        row = int(np.flatnonzero(~np.isfinite(dets.boxes).all(axis=1))[0])
        raise DetkitError(f"detection row {row} (image id {int(dets.image_ids[row])}) has a non-finite box")


def _stable_order(*keys: np.ndarray) -> np.ndarray:
    """Like ``np.lexsort(keys)`` (last key primary, ties in input order) as a chain of stable argsorts,
    which is faster for a few long keys."""
    order = np.argsort(keys[0], kind="stable")
    for k in keys[1:]:
        order = order[np.argsort(k[order], kind="stable")]
    return order


def _ranges(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query key, the [start, end) slice of equal keys in ``sorted_keys``."""
    return np.searchsorted(sorted_keys, queries, side="left"), np.searchsorted(sorted_keys, queries, side="right")


def match_detections(
    dets: DetectionTable,
    gt: CocoData,
    iou_threshold: float,
    max_dets: int = 100,
    class_agnostic: bool = False,
) -> MatchResult:
    """Match detections to ground truth with pycocotools' greedy rules (see the module docstring)."""
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise DetkitError(f"IoU threshold must be in [0, 1], got {iou_threshold}")
    if max_dets < 1:
        raise DetkitError(f"max_dets must be at least 1, got {max_dets}")
    thr = min(float(iou_threshold), _MAX_IOU_THRESHOLD)

    image_list = np.unique(np.asarray([int(img["id"]) for img in gt.images], dtype=np.int64))
    cat_list = np.unique(np.asarray([int(c["id"]) for c in gt.categories], dtype=np.int64))
    n_cats = max(len(cat_list), 1)

    d_img, d_img_ok = _index_of(dets.image_ids, image_list)
    d_cat, d_cat_ok = _index_of(dets.category_ids, cat_list)
    _check_detections(dets, d_img_ok, d_cat_ok)

    g_image_ids, g_cat_ids, g_boxes, g_crowd = _gt_arrays(gt)
    g_img, g_img_ok = _index_of(g_image_ids, image_list)
    g_cat, g_cat_ok = _index_of(g_cat_ids, cat_list)
    g_known = g_img_ok & g_cat_ok  # annotations of unknown images/categories take no part (as pycocotools)
    gt_ignored = g_crowd | ~g_known
    num_gt = np.bincount(g_cat[g_known & ~g_crowd], minlength=len(cat_list)).astype(np.int64)[: len(cat_list)]

    n_det, n_gt = len(dets), len(gt.annotations)
    tp = np.zeros(n_det, bool)
    ignored = np.zeros(n_det, bool)
    kept = np.zeros(n_det, bool)
    iou_out = np.zeros(n_det, np.float64)
    gt_index = np.full(n_det, -1, np.int64)
    gt_det_index = np.full(n_gt, -1, np.int64)
    result = MatchResult(
        tp,
        ignored,
        kept,
        iou_out,
        gt_index,
        gt_det_index,
        gt_ignored,
        cat_list,
        num_gt,
        float(iou_threshold),
        int(max_dets),
        bool(class_agnostic),
    )
    if n_det == 0:
        return result

    # Group keys: (image, class) or image only.
    d_key = d_img if class_agnostic else d_img * n_cats + d_cat
    g_key = g_img if class_agnostic else g_img * n_cats + g_cat

    # Detections: sort by (group, -score), ties by category then input order (pycocotools concatenates a
    # class-agnostic group category by category before its stable sort); rank in group; keep top max_dets.
    d_order = _stable_order(d_cat, -dets.scores, d_key)
    d_key_sorted = d_key[d_order]
    first = np.r_[True, d_key_sorted[1:] != d_key_sorted[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n_det), 0))
    rank_sorted = np.arange(n_det) - group_start
    keep_sorted = rank_sorted < max_dets
    kept[d_order[keep_sorted]] = True
    det_rows = d_order[keep_sorted]  # detection rows in (group, score) order
    det_rank = rank_sorted[keep_sorted]
    det_key = d_key_sorted[keep_sorted]

    # Ground truth of known images/categories in pycocotools' order: (group, ignored, category, input order).
    g_rows_all = np.flatnonzero(g_known)
    g_order = g_rows_all[np.lexsort((g_cat[g_rows_all], gt_ignored[g_rows_all], g_key[g_rows_all]))]
    g_key_sorted = g_key[g_order]

    # All (detection, GT) pairs of the same group, built without Python loops, in chunks of detections that
    # bound memory. Any contiguous chunking is exact: a group split over two chunks keeps its rank order, and
    # the GTs taken so far are shared.
    start, end = _ranges(g_key_sorted, det_key)
    counts = end - start
    cum = np.cumsum(counts)
    cuts = np.searchsorted(cum, np.arange(_PAIR_CHUNK, int(cum[-1]) if len(cum) else 0, _PAIR_CHUNK), side="right")
    bounds = np.unique(np.r_[0, cuts, len(det_rows)])
    gt_taken = np.zeros(n_gt, bool)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        c = counts[lo:hi]
        pair_det = lo + np.repeat(np.arange(hi - lo), c)  # index into det_rows
        offsets = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
        pair_gpos = np.repeat(start[lo:hi], c) + offsets  # position in g_order (its order inside the group)
        pair_gt = g_order[pair_gpos]  # annotation index
        pair_crowd = g_crowd[pair_gt]
        pair_iou = box_iou_xywh(dets.boxes[det_rows[pair_det]], g_boxes[pair_gt], pair_crowd)

        # Greedy assignment, one detection rank at a time (a group has at most one detection per rank).
        pair_rank = det_rank[pair_det]
        by_rank = np.argsort(pair_rank, kind="stable")
        ranks = np.unique(pair_rank)
        rank_bounds = np.searchsorted(
            pair_rank[by_rank], np.r_[ranks, ranks[-1] + 1] if len(ranks) else ranks, side="left"
        )
        for k in range(len(ranks)):
            sel = by_rank[rank_bounds[k] : rank_bounds[k + 1]]
            ok = (pair_iou[sel] >= thr) & (pair_crowd[sel] | ~gt_taken[pair_gt[sel]])
            sel = sel[ok]
            if len(sel) == 0:
                continue
            # Best candidate per detection: regular before crowd, then highest IoU, then the later GT on ties.
            order = np.lexsort((pair_gpos[sel], pair_iou[sel], ~pair_crowd[sel], pair_det[sel]))
            sel = sel[order]
            last = np.r_[pair_det[sel][1:] != pair_det[sel][:-1], True]
            win = sel[last]
            rows = det_rows[pair_det[win]]
            gts = pair_gt[win]
            crowd = pair_crowd[win]
            gt_taken[gts[~crowd]] = True
            gt_det_index[gts[~crowd]] = rows[~crowd]
            tp[rows[~crowd]] = True
            ignored[rows[crowd]] = True
            iou_out[rows] = pair_iou[win]
            gt_index[rows] = gts
    return result
