"""Per-class operating thresholds ("keep a detection if its score >= threshold of its class").

- ``lrp``: the LRP-optimal threshold (Oksuz et al.; what Kuzucu et al. use for u_c and v_c), at the
  calibrator's IoU threshold.
- ``f1``: the threshold maximising F1 = 2 TP / (2 TP + FP + FN) at IoU ``iou_threshold``.
- ``precision``: the lowest threshold whose precision is >= a target (the most recall at that precision);
  a class that never reaches the target gets its highest-precision threshold and is listed as unreachable.
- ``fixed``: one value for every class (0.3 in the D-ECE-style protocol of Cal-DETR / BPC).

A cut never separates tied scores. Classes without a TP get NaN (keep everything), as LRP does; classes
without GT in the split get -1. Arrays are over classes in model order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData
from detkit.errors import DetkitError
from detkit.evaluation.calibration_metrics import Matched, lrp, select
from detkit.evaluation.detections import DetectionTable

RULES = ("lrp", "f1", "precision")


@dataclass
class ThresholdRule:
    kind: str = "lrp"  # lrp | f1 | precision | fixed
    precision: float | None = None  # target for kind="precision"
    value: float | None = None  # the threshold for kind="fixed"

    @classmethod
    def parse(cls, text: str) -> ThresholdRule:
        """``"lrp"``, ``"f1"``, ``"precision=0.9"`` or a fixed number such as ``"0.3"``."""
        t = text.strip().lower()
        if t in ("lrp", "f1"):
            return cls(t)
        try:
            value = float(t)
        except ValueError:
            value = None
        if value is not None:
            if not 0.0 <= value <= 1.0:
                raise DetkitError(f"invalid threshold {text!r}: a fixed threshold must be in [0, 1]")
            return cls("fixed", value=value)
        if t.startswith("precision"):
            _, _, value = t.partition("=")
            try:
                target = float(value)
            except ValueError:
                target = float("nan")
            if not 0.0 < target <= 1.0:
                raise DetkitError(
                    f"invalid threshold rule {text!r}: the precision target must be in (0, 1]",
                    hint="e.g. precision=0.9",
                    params="threshold",
                )
            return cls("precision", target)
        raise DetkitError(f"unknown threshold rule {text!r}", hint="use lrp, f1, precision=<target> or a number")

    def describe(self) -> str:
        if self.kind == "precision":
            return f"precision={self.precision:g}"
        return f"fixed {self.value:g}" if self.kind == "fixed" else self.kind


@dataclass
class Thresholds:
    values: np.ndarray  # [K] model order
    rule: str
    iou_threshold: float
    unreachable: list[str] = field(default_factory=list)

    def as_category_map(self, class_map: ClassMap) -> dict[int, float]:
        return {int(c): float(v) for c, v in zip(class_map.category_ids, self.values.tolist())}

    def to_dict(self, class_map: ClassMap) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "iou_threshold": float(self.iou_threshold),
            "values": {
                n: (None if not np.isfinite(v) else float(v)) for n, v in zip(class_map.names, self.values.tolist())
            },
            "null_means": "keep every detection of the class (no TP to choose a threshold from)",
        }
        if self.unreachable:
            out["unreachable"] = self.unreachable
        return out


def _to_model_order(
    per_sorted_cat: np.ndarray, category_ids: np.ndarray, class_map: ClassMap, fill: float = -1.0
) -> np.ndarray:
    by_id = dict(zip(category_ids.tolist(), per_sorted_cat.tolist()))
    return np.asarray([by_id.get(c, fill) for c in class_map.category_ids], dtype=np.float64)


def _cut_table(m: Matched) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per counted detection in (class, -score) order: class, score, cumulative TP, FP, and valid-cut flag."""
    order = np.lexsort((-m.scores, m.cls))
    cls, s, tp = m.cls[order], m.scores[order], m.tp[order].astype(np.float64)
    n = len(cls)
    c = np.cumsum(tp)
    cf = np.cumsum(1.0 - tp)
    starts = np.searchsorted(cls, cls, side="left")
    ctp = c - np.concatenate([[0.0], c])[starts] if n else c
    cfp = cf - np.concatenate([[0.0], cf])[starts] if n else cf
    ok = np.r_[(cls[1:] != cls[:-1]) | (s[1:] != s[:-1]), True] if n else np.zeros(0, bool)
    return cls, s, ctp, cfp, ok


def _best_per_class(cls: np.ndarray, key: np.ndarray, n_classes: int) -> np.ndarray:
    """Position of the smallest ``key`` per class (first position on ties), -1 for classes without rows."""
    best = np.full(n_classes, -1, np.int64)
    if len(cls):
        order = np.lexsort((np.arange(len(cls)), key, cls))
        first = np.r_[True, cls[order][1:] != cls[order][:-1]]
        best[cls[order][first]] = order[first]
    return best


def choose_thresholds(
    dets: DetectionTable,
    gt: CocoData,
    class_map: ClassMap,
    rule: ThresholdRule,
    iou_threshold: float,
    max_dets: int = 100,
) -> Thresholds:
    """Per-class thresholds by ``rule`` on the detections of a (calibration) split."""
    if rule.kind == "fixed":
        return Thresholds(np.full(len(class_map), float(rule.value)), rule.describe(), float(iou_threshold))
    m = select(dets, gt, iou_threshold, None, max_dets)
    cats = m.match.category_ids
    no_gt = m.match.num_gt == 0
    if rule.kind == "lrp":
        r = lrp(m)
        return Thresholds(_to_model_order(r.threshold, cats, class_map), "lrp", float(iou_threshold))
    C = len(cats)
    cls, s, ctp, cfp, ok = _cut_table(m)
    num_gt = m.match.num_gt.astype(np.float64)
    has_tp = np.zeros(C, bool)
    if len(cls):
        has_tp[np.unique(cls[ctp > 0])] = True
    unreachable: list[str] = []
    if rule.kind == "f1":
        f1 = 2 * ctp / np.maximum(2 * ctp + cfp + (num_gt[cls] - ctp), 1e-300)
        best = _best_per_class(cls, np.where(ok, -f1, np.inf), C)
    else:
        prec = ctp / np.maximum(ctp + cfp, 1e-300)
        reach = ok & (prec >= rule.precision - 1e-12)
        # the most detections (largest position) among cuts that reach the target
        best = _best_per_class(cls, np.where(reach, -np.arange(len(cls), dtype=np.float64), np.inf), C)
        fallback = _best_per_class(cls, np.where(ok, -prec, np.inf), C)
        missing = (best < 0) | ~reach[np.maximum(best, 0)] if len(cls) else np.ones(C, bool)
        names = dict(zip(class_map.category_ids, class_map.names))
        for c in np.flatnonzero(missing & has_tp & ~no_gt):
            unreachable.append(names.get(int(cats[c]), str(int(cats[c]))))
        best = np.where(missing, fallback, best)
    thr = np.full(C, np.nan)
    sel = (best >= 0) & has_tp
    thr[sel] = s[best[sel]]
    thr[no_gt] = -1.0
    return Thresholds(_to_model_order(thr, cats, class_map), rule.describe(), float(iou_threshold), unreachable)
