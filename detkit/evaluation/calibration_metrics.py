"""Calibration metrics of object detectors: D-ECE, LaECE, LaECE_0, LaACE_0 and LRP (with optimal thresholds).

Every metric matches detections to ground truth with the one matcher
(:func:`detkit.evaluation.matching.match_detections`, pycocotools greedy rules) and records in its result
how it was computed: bins, bin-edge convention, IoU rule, score threshold, targets and class aggregation.
Values are fractions in [0, 1] (papers print them x100).

Conventions (spec Part B):

- Only detections that count (top ``max_dets`` per image and class, not matched to a crowd GT) enter a metric.
- Classes without any non-ignored GT in the evaluated set are skipped entirely, as in the reference code.
- Bin edges are ``numpy.linspace(0, 1, J + 1)``. ``"netcal"``: [lo, hi), last bin closed, values clipped to
  [eps, 1 - eps] first (netcal 1.4). ``"kuzucu"``: first bin [0, 1/J], the others (lo, hi] (detection_calibration).
  ``"saod"``: [lo, hi) with the last bin closed (SAOD drops a score of exactly 1; we do not).
- D-ECE = sum over occupied cells of (n_cell / N) |precision - mean confidence| (Kuppers et al.; netcal's
  detection ECE: cells with fewer than ``sample_threshold`` samples add 0 but still count in N).
- LaECE / LaECE_0: per class sum_j (n_j / n) |mean p - mean q| with q = IoU for TPs, 0 for FPs; mean over
  classes. Deviation from the reference code: a class whose error is exactly 0 counts as 0 (the code drops it),
  so a perfect detector scores 0; classes without detections are left out.
- LaACE_0: per class mean |p - q| over TPs and FPs (the paper's formula; the reference code also averages in
  crowd-matched detections with target 0), mean over classes.
- LRP (Oksuz et al.): per class [sum_TP (1 - IoU) / (1 - tau) + FP + FN] / (TP + FP + FN); nanmean over classes.
  LRP-optimal thresholds are searched over score levels (a cut never splits tied scores, so the threshold
  reproduces exactly the optimal set); a class without TP gets NaN (keep everything), without GT -1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData
from detkit.errors import DetkitError
from detkit.evaluation.detections import DetectionTable
from detkit.evaluation.matching import MatchResult, match_detections

BIN_CONVENTIONS = {
    "netcal": "[lo, hi), last bin [lo, 1]; values clipped to [eps, 1-eps] (netcal 1.4)",
    "kuzucu": "first bin [0, 1/J], others (lo, hi] (detection_calibration, Kuzucu et al. 2024)",
    "saod": "[lo, hi), last bin [lo, 1] (SAOD, Oksuz et al. 2023, keeping scores of exactly 1)",
}

Thresholds = float | Mapping[int, float] | None
D_ECE_SCORE_THRESHOLD = 0.3  # the Cal-DETR / BPC D-ECE protocol keeps detections scored >= 0.3


# --------------------------------------------------------------------------------------------------------
# binning


def bin_indices(values: np.ndarray, n_bins: int, convention: str = "netcal") -> np.ndarray:
    """Bin index in ``0..n_bins-1`` of each value in [0, 1] under an edge convention (see module docstring)."""
    if convention not in BIN_CONVENTIONS:
        raise ValueError(f"unknown bin convention {convention!r}; use one of {sorted(BIN_CONVENTIONS)}")
    v = np.asarray(values, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    if convention == "netcal":
        eps = np.finfo(np.float64).eps
        v = np.clip(v, eps, 1.0 - eps)
    side = "left" if convention == "kuzucu" else "right"
    return np.clip(np.searchsorted(edges, v, side=side) - 1, 0, n_bins - 1)


def _cell_indices(X: np.ndarray, bins: Sequence[int], convention: str) -> tuple[np.ndarray, int]:
    """Flat grid-cell index of each row of ``X`` (one column per binned dimension)."""
    idx = [bin_indices(X[:, k], b, convention) for k, b in enumerate(bins)]
    return np.ravel_multi_index(idx, tuple(bins)), int(np.prod(bins))


def detection_ece(
    X: np.ndarray,
    y: np.ndarray,
    bins: int | Sequence[int] = 10,
    sample_threshold: int = 1,
    groups: np.ndarray | None = None,
    n_groups: int | None = None,
    convention: str = "netcal",
) -> tuple[float, np.ndarray]:
    """D-ECE of confidences (column 0 of ``X``, other columns: box features in [0, 1]) against 0/1 ``y``.

    Without ``groups`` one pooled value (equal to ``netcal.metrics.ECE(bins, detection=True,
    sample_threshold).measure(X, y)``); with ``groups`` (class index per row) the unweighted mean over groups
    that have samples. Returns ``(value, per_group)`` (per_group has one entry when pooled; NaN = no samples).
    """
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(-1, 1) if X.ndim == 1 else X
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    nb = [int(bins)] * X.shape[1] if isinstance(bins, (int, np.integer)) else [int(b) for b in bins]
    if len(nb) != X.shape[1]:
        raise ValueError(f"{len(nb)} bin counts for {X.shape[1]} feature columns")
    g = np.zeros(len(y), np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    if groups is None:
        n_groups = 1
    elif n_groups is None:
        n_groups = int(g.max()) + 1 if len(g) else 1
    cell, n_cells = _cell_indices(X, nb, convention)
    key = g * n_cells + cell
    size = n_groups * n_cells
    count = np.bincount(key, minlength=size).reshape(n_groups, n_cells)
    conf = (
        np.clip(X[:, 0], np.finfo(np.float64).eps, 1 - np.finfo(np.float64).eps) if convention == "netcal" else X[:, 0]
    )
    gap = np.abs(np.bincount(key, weights=y, minlength=size) - np.bincount(key, weights=conf, minlength=size))
    gap = np.where(count.reshape(-1) >= sample_threshold, gap, 0.0).reshape(n_groups, n_cells)
    n = count.sum(axis=1)
    per_group = np.full(n_groups, np.nan)
    np.divide(gap.sum(axis=1), n, out=per_group, where=n > 0)
    value = float(np.nanmean(per_group)) if np.any(n > 0) else float("nan")
    return value, per_group


# --------------------------------------------------------------------------------------------------------
# selection of the detections a metric sees


@dataclass
class Matched:
    """The detections a metric sees, after thresholding and matching: one row per counted detection."""

    match: MatchResult
    rows: np.ndarray  # detection rows (into the input table) that count: kept, not crowd-matched, class has GT
    cls: np.ndarray  # class index (into match.category_ids) of each counted detection
    scores: np.ndarray
    tp: np.ndarray
    iou: np.ndarray  # IoU of TPs, 0 for FPs
    score_threshold: Any

    @property
    def target_iou(self) -> np.ndarray:
        return np.where(self.tp, self.iou, 0.0)

    @property
    def num_classes(self) -> int:
        return len(self.match.category_ids)

    @property
    def evaluated_classes(self) -> np.ndarray:
        """bool [C]: classes with at least one non-ignored GT (the others are skipped)."""
        return self.match.num_gt > 0


def threshold_mask(dets: DetectionTable, thresholds: Thresholds) -> np.ndarray:
    """Keep detections with ``score >= threshold`` of their class (a NaN threshold keeps everything)."""
    if thresholds is None:
        return np.ones(len(dets), bool)
    if isinstance(thresholds, Mapping):
        cats = np.asarray(sorted(int(k) for k in thresholds), dtype=np.int64)
        vals = np.asarray([float(thresholds[k]) for k in sorted(thresholds, key=int)], dtype=np.float64)
        pos = np.clip(np.searchsorted(cats, dets.category_ids), 0, max(len(cats) - 1, 0))
        known = (cats[pos] == dets.category_ids) if len(cats) else np.zeros(len(dets), bool)
        thr = np.where(known, vals[pos] if len(vals) else 0.0, -np.inf)
    else:
        thr = np.full(len(dets), float(thresholds))
    return ~(dets.scores < thr)


def _describe_thresholds(thresholds: Thresholds) -> Any:
    if thresholds is None:
        return None
    if isinstance(thresholds, Mapping):
        return {str(int(k)): (None if not np.isfinite(v) else float(v)) for k, v in thresholds.items()}
    return float(thresholds)


def select(
    dets: DetectionTable,
    gt: CocoData,
    iou_threshold: float,
    thresholds: Thresholds = None,
    max_dets: int = 100,
) -> Matched:
    """Threshold (per class or global), match at ``iou_threshold`` and keep the detections that count.

    Thresholding first is equivalent to matching first: greedy matching visits detections by descending
    score, so dropping low scores never changes how the higher ones match.
    """
    keep = np.flatnonzero(threshold_mask(dets, thresholds))
    m = match_detections(dets.subset(keep), gt, iou_threshold, max_dets=max_dets)
    cls = np.searchsorted(m.category_ids, dets.category_ids[keep])
    counted = m.valid & (m.num_gt[cls] > 0)
    return Matched(
        match=m,
        rows=keep[counted],
        cls=cls[counted],
        scores=dets.scores[keep[counted]],
        tp=m.tp[counted],
        iou=np.where(m.tp[counted], m.iou[counted], 0.0),
        score_threshold=_describe_thresholds(thresholds),
    )


# --------------------------------------------------------------------------------------------------------
# per-class binned errors


def _class_names(match: MatchResult, class_map: ClassMap | None) -> list[str]:
    if class_map is None:
        return [str(int(c)) for c in match.category_ids]
    by_id = dict(zip(class_map.category_ids, class_map.names))
    return [by_id.get(int(c), str(int(c))) for c in match.category_ids]


def _per_class(values: np.ndarray, names: list[str]) -> dict[str, float | None]:
    return {n: (None if not np.isfinite(v) else float(v)) for n, v in zip(names, values.tolist())}


def _nanmean(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def binned_class_error(
    p: np.ndarray, q: np.ndarray, cls: np.ndarray, n_classes: int, n_bins: int, convention: str
) -> tuple[np.ndarray, dict[str, list]]:
    """Per class sum_j (n_j / n) |mean p - mean q| over equal-width confidence bins, and the bin statistics.

    Returns ``(per_class [C] with NaN for classes without detections, reliability)`` where reliability holds
    the edges and, per bin, the class-averaged mean target, mean confidence and fraction of samples
    (nanmean over classes that have detections, as the detection_calibration diagram).
    """
    b = bin_indices(p, n_bins, convention)
    key = cls * n_bins + b
    size = n_classes * n_bins
    count = np.bincount(key, minlength=size).reshape(n_classes, n_bins).astype(np.float64)
    sp = np.bincount(key, weights=p, minlength=size).reshape(n_classes, n_bins)
    sq = np.bincount(key, weights=q, minlength=size).reshape(n_classes, n_bins)
    n = count.sum(axis=1)
    per_class = np.full(n_classes, np.nan)
    np.divide(np.abs(sp - sq).sum(axis=1), n, out=per_class, where=n > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sp / count, np.nan)
        mean_q = np.where(count > 0, sq / count, np.nan)
        frac = np.where(n[:, None] > 0, count / n[:, None], np.nan)
    has = n > 0
    reliability = {
        "edges": np.linspace(0, 1, n_bins + 1).tolist(),
        "count": count.sum(axis=0).astype(int).tolist(),
        "mean_confidence": _col_nanmean(mean_p[has]),
        "mean_target": _col_nanmean(mean_q[has]),
        "fraction": _col_nanmean(frac[has]),
        "per_class": [
            None
            if not has[c]
            else {
                "count": count[c].astype(int).tolist(),
                "mean_confidence": _nan_to_none(mean_p[c]),
                "mean_target": _nan_to_none(mean_q[c]),
                "fraction": _nan_to_none(frac[c]),
            }
            for c in range(n_classes)
        ],
    }
    return per_class, reliability


def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in a.tolist()]


def _col_nanmean(a: np.ndarray) -> list[float | None]:
    if a.size == 0:
        return [None] * (a.shape[1] if a.ndim == 2 else 0)
    ok = np.isfinite(a)
    cnt = ok.sum(axis=0)
    s = np.where(ok, a, 0.0).sum(axis=0)
    return [None if c == 0 else float(v / c) for v, c in zip(s.tolist(), cnt.tolist())]


# --------------------------------------------------------------------------------------------------------
# metrics


def _box_features(dets: DetectionTable, rows: np.ndarray, gt: CocoData) -> np.ndarray:
    """(cx, cy, w, h) relative to the image size, for D-ECE with box features."""
    ids = np.asarray([int(im["id"]) for im in gt.images], dtype=np.int64)
    wh = np.asarray([(im.get("width") or 0, im.get("height") or 0) for im in gt.images], dtype=np.float64).reshape(
        -1, 2
    )
    order = np.argsort(ids)
    pos = order[np.searchsorted(ids[order], dets.image_ids[rows])]
    size = wh[pos]
    if np.any(size <= 0):
        bad = int(dets.image_ids[rows][np.flatnonzero((size <= 0).any(axis=1))[0]])
        raise DetkitError(
            f"image id {bad} has no width/height in the annotations, needed for box-feature D-ECE",
            hint="run `detkit data validate --fix` to fill image sizes",
        )
    b = dets.boxes[rows]
    return np.stack(
        [
            (b[:, 0] + b[:, 2] / 2) / size[:, 0],
            (b[:, 1] + b[:, 3] / 2) / size[:, 1],
            b[:, 2] / size[:, 0],
            b[:, 3] / size[:, 1],
        ],
        axis=1,
    )


def d_ece(
    dets: DetectionTable,
    gt: CocoData,
    iou_threshold: float = 0.5,
    bins: int | Sequence[int] = 10,
    score_threshold: Thresholds = 0.3,
    box_features: bool = False,
    class_agnostic: bool = True,
    sample_threshold: int = 1,
    max_dets: int = 100,
    class_map: ClassMap | None = None,
    name: str = "D-ECE",
    matched: Matched | None = None,
) -> dict[str, Any]:
    """Detection ECE (Kuppers et al. 2020) with binary TP targets from greedy matching at ``iou_threshold``.

    ``class_agnostic`` pools all classes (the Cal-DETR / BPC protocol); otherwise one value per class and their
    unweighted mean (netcal's detection example). ``box_features`` adds (cx, cy, w, h) / image size.
    """
    m = matched or select(dets, gt, iou_threshold, score_threshold, max_dets)
    n_dims = 5 if box_features else 1
    nb = [int(bins)] * n_dims if isinstance(bins, (int, np.integer)) else [int(b) for b in bins]
    X = m.scores.reshape(-1, 1)
    if box_features:
        X = np.concatenate([X, _box_features(dets, m.rows, gt)], axis=1)
    y = m.tp.astype(np.float64)
    names = _class_names(m.match, class_map)
    value_classwise, per_class = detection_ece(X, y, nb, sample_threshold, groups=m.cls, n_groups=m.num_classes)
    value = detection_ece(X, y, nb, sample_threshold)[0] if class_agnostic else value_classwise
    _, reliability = binned_class_error(m.scores, y, np.zeros(len(y), np.int64), 1, nb[0], "netcal")
    reliability.pop("per_class")
    return {
        "name": name,
        "value": None if not np.isfinite(value) else value,
        "per_class": _per_class(per_class, names),
        "features": ["confidence", "cx", "cy", "w", "h"] if box_features else ["confidence"],
        "bins": nb,
        "bin_edges": BIN_CONVENTIONS["netcal"],
        "sample_threshold": int(sample_threshold),
        "targets": "binary TP (1) / FP (0)",
        "aggregation": "pooled over classes" if class_agnostic else "unweighted mean over classes",
        "score_threshold": m.score_threshold,
        "matching": m.match.settings(),
        "num_detections": int(len(y)),
        "reliability": reliability,
    }


def la_ece(
    dets: DetectionTable,
    gt: CocoData,
    iou_threshold: float = 0.0,
    n_bins: int = 25,
    score_threshold: Thresholds = None,
    convention: str = "kuzucu",
    max_dets: int = 100,
    class_map: ClassMap | None = None,
    name: str = "LaECE_0",
    matched: Matched | None = None,
) -> dict[str, Any]:
    """Localisation-aware ECE: per class, binned |mean confidence - mean IoU target|, averaged over classes.

    LaECE_0 (Kuzucu et al. 2024): ``iou_threshold=0``, 25 bins, ``"kuzucu"`` edges. LaECE (Oksuz et al. 2023):
    ``iou_threshold=0.1``, 25 bins, ``"saod"`` edges.
    """
    m = matched or select(dets, gt, iou_threshold, score_threshold, max_dets)
    per_class, reliability = binned_class_error(m.scores, m.target_iou, m.cls, m.num_classes, n_bins, convention)
    per_class[~m.evaluated_classes] = np.nan
    names = _class_names(m.match, class_map)
    reliability["per_class"] = {
        n: r for n, r, ok in zip(names, reliability["per_class"], m.evaluated_classes) if r and ok
    }
    value = _nanmean(per_class)
    return {
        "name": name,
        "value": None if not np.isfinite(value) else value,
        "per_class": _per_class(per_class, _class_names(m.match, class_map)),
        "bins": int(n_bins),
        "bin_edges": BIN_CONVENTIONS[convention],
        "targets": "IoU with the matched GT for TPs, 0 for FPs",
        "aggregation": "mean over classes with GT and detections",
        "score_threshold": m.score_threshold,
        "matching": m.match.settings(),
        "num_detections": int(len(m.scores)),
        "reliability": reliability,
    }


def la_ace(
    dets: DetectionTable,
    gt: CocoData,
    iou_threshold: float = 0.0,
    score_threshold: Thresholds = None,
    max_dets: int = 100,
    class_map: ClassMap | None = None,
    name: str = "LaACE_0",
    matched: Matched | None = None,
) -> dict[str, Any]:
    """Localisation-aware adaptive CE (every detection its own bin): per class mean |p - q|, mean over classes."""
    m = matched or select(dets, gt, iou_threshold, score_threshold, max_dets)
    n = np.bincount(m.cls, minlength=m.num_classes).astype(np.float64)
    s = np.bincount(m.cls, weights=np.abs(m.scores - m.target_iou), minlength=m.num_classes)
    per_class = np.full(m.num_classes, np.nan)
    np.divide(s, n, out=per_class, where=(n > 0) & m.evaluated_classes)
    value = _nanmean(per_class)
    return {
        "name": name,
        "value": None if not np.isfinite(value) else value,
        "per_class": _per_class(per_class, _class_names(m.match, class_map)),
        "bins": "one per detection",
        "targets": "IoU with the matched GT for TPs, 0 for FPs (crowd-matched detections excluded)",
        "aggregation": "mean over classes with GT and detections",
        "score_threshold": m.score_threshold,
        "matching": m.match.settings(),
        "num_detections": int(len(m.scores)),
    }


@dataclass
class LRPResult:
    """Per-class LRP of the whole detection set and at the LRP-optimal score threshold (arrays over classes)."""

    category_ids: np.ndarray
    iou_threshold: float
    lrp: np.ndarray  # LRP with every counted detection kept (NaN for classes without GT)
    olrp: np.ndarray  # LRP at the optimal threshold
    threshold: np.ndarray  # LRP-optimal score threshold: NaN (no TP: keep all), -1 (no GT)
    loc: np.ndarray  # components at the optimum: mean (1 - IoU) of TPs, FP rate, FN rate
    fp: np.ndarray
    fn: np.ndarray
    num_tp: np.ndarray  # at the optimum
    num_kept: np.ndarray  # detections kept at the optimum

    def thresholds_by_category(self) -> dict[int, float]:
        return {int(c): float(t) for c, t in zip(self.category_ids.tolist(), self.threshold.tolist())}


def lrp(matched: Matched) -> LRPResult:
    """LRP error and LRP-optimal thresholds per class (Oksuz et al. 2022), vectorised over classes."""
    tau = matched.match.iou_threshold
    if tau >= 1.0:
        raise DetkitError("LRP needs an IoU threshold below 1")
    C = matched.num_classes
    num_gt = matched.match.num_gt.astype(np.float64)
    order = np.lexsort((-matched.scores, matched.cls))
    cls, s, tp = matched.cls[order], matched.scores[order], matched.tp[order].astype(np.float64)
    loc = np.where(matched.tp[order], (1.0 - matched.iou[order]) / (1.0 - tau), 0.0)
    n = len(cls)
    starts = np.searchsorted(cls, np.arange(C), side="left")
    before = np.zeros(n)

    def cum(v: np.ndarray) -> np.ndarray:
        c = np.cumsum(v)
        base = np.concatenate([[0.0], c])[starts[cls]] if n else before
        return c - base

    ctp, cfp, cloc = cum(tp), cum(1.0 - tp), cum(loc)
    fn = num_gt[cls] - ctp
    lrp_k = (cloc + cfp + fn) / np.maximum(ctp + cfp + fn, 1e-300)
    # A cut may only fall after the last of tied scores: a threshold cannot separate equal scores.
    cut_ok = np.r_[(cls[1:] != cls[:-1]) | (s[1:] != s[:-1]), True] if n else np.zeros(0, bool)
    lrp_k = np.where(cut_ok, lrp_k, np.inf)

    out_lrp = np.where(num_gt > 0, 1.0, np.nan)
    olrp = out_lrp.copy()
    thr = np.where(num_gt > 0, np.nan, -1.0)
    c_loc = np.full(C, np.nan)
    c_fp = np.full(C, np.nan)
    c_fn = np.where(num_gt > 0, 1.0, np.nan)
    n_tp = np.zeros(C, np.int64)
    n_kept = np.bincount(cls, minlength=C).astype(np.int64)
    if n:
        last = np.r_[cls[1:] != cls[:-1], True]
        has_tp = np.zeros(C, bool)
        has_tp[cls[last]] = ctp[last] > 0
        full = np.full(C, np.nan)
        full[cls[last]] = lrp_k[last]
        ok = has_tp & (num_gt > 0)
        out_lrp = np.where(ok, full, out_lrp)
        # argmin per class, first (highest-score) prefix on ties: sort by (class, lrp, position).
        best_order = np.lexsort((np.arange(n), lrp_k, cls))
        first = np.r_[True, cls[best_order][1:] != cls[best_order][:-1]]
        best = best_order[first]
        bc = cls[best]
        okb = ok[bc]
        bc, best = bc[okb], best[okb]
        olrp[bc] = lrp_k[best]
        thr[bc] = s[best]
        n_tp[bc] = ctp[best].astype(np.int64)
        n_kept[:] = np.where(ok, 0, n_kept)
        n_kept[bc] = (best - starts[bc] + 1).astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):  # no TP in the best prefix: components undefined (NaN)
            c_loc[bc] = cloc[best] * (1.0 - tau) / ctp[best]
            c_fp[bc] = cfp[best] / (ctp[best] + cfp[best])
        c_fn[bc] = fn[best] / num_gt[bc]
    return LRPResult(matched.match.category_ids, float(tau), out_lrp, olrp, thr, c_loc, c_fp, c_fn, n_tp, n_kept)


def lrp_report(
    dets: DetectionTable,
    gt: CocoData,
    iou_threshold: float = 0.0,
    score_threshold: Thresholds = None,
    max_dets: int = 100,
    class_map: ClassMap | None = None,
    matched: Matched | None = None,
) -> dict[str, Any]:
    m = matched or select(dets, gt, iou_threshold, score_threshold, max_dets)
    r = lrp(m)
    names = _class_names(m.match, class_map)
    return {
        "name": "LRP",
        "value": _none_if_nan(_nanmean(r.lrp)),
        "olrp": _none_if_nan(_nanmean(r.olrp)),
        "per_class": _per_class(r.lrp, names),
        "olrp_per_class": _per_class(r.olrp, names),
        "optimal_thresholds": {
            n: (None if not np.isfinite(t) else float(t)) for n, t in zip(names, r.threshold.tolist())
        },
        "components_at_optimum": {
            "loc": _none_if_nan(_nanmean(r.loc)),
            "fp": _none_if_nan(_nanmean(r.fp)),
            "fn": _none_if_nan(_nanmean(r.fn)),
        },
        "iou_threshold": float(iou_threshold),
        "aggregation": "mean over classes with GT",
        "score_threshold": m.score_threshold,
        "matching": m.match.settings(),
        "num_detections": int(len(m.scores)),
    }


def _none_if_nan(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def _box_dece_or_skip(
    dets: DetectionTable, gt: CocoData, class_map: ClassMap | None, matched: Matched, max_dets: int
) -> dict[str, Any]:
    name = "D-ECE (confidence + cx, cy, w, h, 5 bins each, IoU 0.5, score >= 0.3, class mean)"
    try:
        return d_ece(
            dets,
            gt,
            0.5,
            bins=5,
            score_threshold=0.3,
            box_features=True,
            class_agnostic=False,
            sample_threshold=8,
            class_map=class_map,
            matched=matched,
            max_dets=max_dets,
            name=name,
        )
    except DetkitError as e:  # images without width/height: the other metrics do not need them
        return {"name": name, "value": None, "skipped": e.message}


def calibration_report(
    dets: DetectionTable,
    gt: CocoData,
    class_map: ClassMap | None = None,
    thresholds: Thresholds = None,
    max_dets: int = 100,
    keep: np.ndarray | None = None,
    keep_description: str | None = None,
) -> dict[str, Any]:
    """Everything that goes into ``calibration.json``: each metric with the settings it was computed with.

    ``thresholds`` is the operating point for the localisation-aware metrics and LRP (a float, a mapping
    category id -> threshold, e.g. LRP-optimal thresholds chosen on a validation split, or ``None`` for all
    detections); ``keep`` (a row mask, described by ``keep_description``) selects the operating point directly,
    e.g. the same detections for raw and calibrated scores. The D-ECE variants see every detection and use
    their own fixed protocol threshold (score >= 0.3).
    """
    op = dets if keep is None else dets.subset(np.asarray(keep, bool))
    m0 = select(op, gt, 0.0, thresholds, max_dets)
    m_dece = select(dets, gt, 0.5, D_ECE_SCORE_THRESHOLD, max_dets)
    metrics = {
        "d_ece": d_ece(
            dets,
            gt,
            0.5,
            bins=10,
            score_threshold=0.3,
            class_agnostic=True,
            class_map=class_map,
            name="D-ECE (Cal-DETR protocol: confidence only, 10 bins, IoU 0.5, score >= 0.3, pooled)",
            matched=m_dece,
            max_dets=max_dets,
        ),
        "d_ece_classwise": d_ece(
            dets,
            gt,
            0.5,
            bins=20,
            score_threshold=0.3,
            class_agnostic=False,
            class_map=class_map,
            name="D-ECE (confidence only, 20 bins, IoU 0.5, score >= 0.3, class mean)",
            matched=m_dece,
            max_dets=max_dets,
        ),
        "d_ece_box": _box_dece_or_skip(dets, gt, class_map, m_dece, max_dets),
        "la_ece": la_ece(op, gt, 0.1, 25, thresholds, "saod", max_dets, class_map, name="LaECE (Oksuz 2023, IoU 0.1)"),
        "la_ece_0": la_ece(op, gt, 0.0, 25, thresholds, "kuzucu", max_dets, class_map, name="LaECE_0", matched=m0),
        "la_ace_0": la_ace(op, gt, 0.0, thresholds, max_dets, class_map, name="LaACE_0", matched=m0),
        "lrp_0": lrp_report(op, gt, 0.0, thresholds, max_dets, class_map, matched=m0),
        "lrp_50": lrp_report(op, gt, 0.5, thresholds, max_dets, class_map),
    }
    described = _describe_thresholds(thresholds)
    if keep is not None:
        described = keep_description or "a given subset of the detections"
    return {
        "scale": "fraction in [0, 1] (papers print x100)",
        "operating_thresholds": described,
        "num_detections": int(len(dets)),
        "classes_skipped_without_gt": [
            n for n, ok in zip(_class_names(m0.match, class_map), m0.evaluated_classes) if not ok
        ],
        "metrics": metrics,
    }


def summary_values(report: dict[str, Any]) -> dict[str, float | None]:
    """``{metric key: value}`` of a :func:`calibration_report` (for tables)."""
    out = {k: v.get("value") for k, v in report["metrics"].items()}
    out["olrp_0"] = report["metrics"]["lrp_0"].get("olrp")
    return out
