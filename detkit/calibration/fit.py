"""Fit a calibrator on detections of one split and measure it on another
(after Kuzucu et al. 2024, with one deliberate change).

FIT on the calibration split (detections V, matched with the shared matcher at IoU tau):

1. u_c: per-class pre-threshold on raw scores: LRP-optimal, a fixed value, or none; ``"auto"`` (default) is
   none for ``target="tp"`` (D-ECE judges every detection scored >= 0.3) and LRP-optimal for ``"iou"``;
2. V' = detections with score >= u_c; targets q = IoU for TPs and 0 for FPs (``target="iou"``), or 0/1
   (``target="tp"``); crowd-matched detections and classes without GT take no part;
3. fit one strictly increasing map of [0, 1] per class (or one for all) on V', identity for classes with too
   little data; temperature keeps the identity unless it lowers the fit split's D-ECE (and, for IoU targets,
   LaECE_0), with the reason recorded;
4. v_c: per-class operating threshold on the *calibrated* V' (LRP-optimal, F1-optimal or a target precision).

What the pre-threshold means (the change): u_c only chooses the detections the map is *fitted* on and, with
v_c, the operating point. It never drops a detection: the map covers all of [0, 1] and is strictly increasing,
so every detection is kept, calibrated and keeps its rank (AP unchanged). ``predict`` applies the operating
point (raw >= u_c and calibrated >= v_c); an ONNX graph applies it only when exported with
``drop_below_threshold``.

EVALUATE on a different split (default ``test``, else ``val``; the fit split only with ``force``):
AP of all raw vs all calibrated detections; D-ECE of all detections at its protocol threshold (score >= 0.3,
raw vs calibrated); the localisation-aware errors and LRP on the detections at the operating point, the same
detections raw ("before") and calibrated ("after").

tau defaults to 0 for IoU targets (LaECE_0 / LRP setting) and 0.5 for TP targets (D-ECE setting).

The stage function that runs a model over the splits and writes ``calibrator.json`` is
:func:`detkit.stages.calibrate.calibrate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detkit.calibration.apply import apply_to_table, keep_mask
from detkit.calibration.calibrators import (
    METHODS,
    TARGETS,
    Calibrator,
    fit_calibrator,
    identity_params,
    temperature_objective,
)
from detkit.calibration.thresholds import ThresholdRule, Thresholds, choose_thresholds
from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData
from detkit.data.dataset import DatasetSpec
from detkit.errors import DetkitError
from detkit.evaluation.calibration_metrics import (
    D_ECE_SCORE_THRESHOLD,
    calibration_report,
    d_ece,
    la_ece,
    select,
    summary_values,
)
from detkit.evaluation.detections import DetectionTable

SUMMARY_KEYS = ("d_ece", "la_ece_0", "la_ace_0", "lrp_0", "la_ece")
SHORT_NAMES = {
    "d_ece": "D-ECE (10 bins, IoU 0.5, score >= 0.3, pooled)",
    "la_ece_0": "LaECE_0 (25 bins, IoU 0)",
    "la_ace_0": "LaACE_0 (IoU 0)",
    "lrp_0": "LRP (IoU 0)",
    "la_ece": "LaECE (25 bins, IoU 0.1)",
}


@dataclass
class CalibrationResult:
    calibrator: Calibrator
    fit_split: str
    eval_split: str | None
    before: dict[str, Any] | None = None  # calibration_report of the raw detector on the eval split
    after: dict[str, Any] | None = None  # ... of the calibrated detector
    ap_before: float | None = None
    ap_after: float | None = None
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, float | None, float | None]]:
        """(metric, before, after) for the summary table (fractions)."""
        if self.before is None or self.after is None:
            return []
        b, a = summary_values(self.before), summary_values(self.after)
        out = [(SHORT_NAMES[k], b[k], a[k]) for k in SUMMARY_KEYS]
        out.append(("AP (no thresholds)", self.ap_before, self.ap_after))
        return out


def default_iou(target: str) -> float:
    return 0.0 if target == "iou" else 0.5


def resolve_eval_split(ds: DatasetSpec, fit_split: str, eval_split: str | None, force: bool) -> str | None:
    if eval_split is None:
        for name in ("test", "val"):
            if name != fit_split and ds.has_split(name):
                return name
        return None
    ds.split(eval_split)  # a clear error if it does not exist
    if eval_split == fit_split and not force:
        raise DetkitError(
            f"refusing to evaluate the calibrator on '{eval_split}', the split it was fitted on: "
            "the numbers would be optimistic",
            hint="choose another eval_split (test or val), or force it anyway",
            params=("eval_split", "force"),
        )
    return eval_split


def _threshold_iou(rule: ThresholdRule, tau: float) -> float:
    """LRP uses the calibrator's tau; F1 and precision need a real TP criterion, so tau = 0 becomes 0.5."""
    return tau if rule.kind == "lrp" or tau > 0 else 0.5


def resolve_pre_threshold(pre: str | float | None, target: str) -> str | float | None:
    """``"auto"``: the detections the target's metric judges: every detection for ``tp`` (D-ECE looks at every
    detection scored >= 0.3 after calibration), the raw LRP-optimal region for ``iou`` (LaECE_0 at the
    operating point)."""
    if isinstance(pre, str) and pre.strip().lower() == "auto":
        return "none" if target == "tp" else "lrp"
    return pre


def _pre_thresholds(
    dets: DetectionTable, gt: CocoData, cm: ClassMap, pre: str | float | None, tau: float
) -> Thresholds | None:
    if pre is None or (isinstance(pre, str) and pre.lower() == "none"):
        return None
    if isinstance(pre, str) and pre.lower() == "lrp":
        return choose_thresholds(dets, gt, cm, ThresholdRule("lrp"), tau)
    try:
        value = float(pre)
    except (TypeError, ValueError):
        raise DetkitError(f"invalid pre-threshold {pre!r}", hint="use auto, lrp, none or a number in [0, 1]") from None
    if not 0.0 <= value <= 1.0:
        raise DetkitError(f"pre-threshold must be in [0, 1], got {value}")
    return Thresholds(np.full(len(cm), value), f"fixed {value:g}", tau)


def _keep_raw(dets: DetectionTable, cm: ClassMap, thr: Thresholds | None) -> DetectionTable:
    """Detections whose raw score reaches their class's threshold (NaN keeps everything)."""
    if thr is None or len(dets) == 0:
        return dets
    return dets.subset(~(dets.scores < thr.values[cm.category_ids_to_labels(dets.category_ids)]))


def _ap(gt: CocoData, dets: DetectionTable, cm: ClassMap) -> float | None:
    from detkit.evaluation.coco_metrics import evaluate_coco

    return evaluate_coco(gt, dets, cm)["AP"]


def fit_on_detections(
    dets: DetectionTable,
    gt: CocoData,
    class_map: ClassMap,
    method: str = "isotonic",
    classwise: bool = True,
    target: str = "iou",
    iou: float | None = None,
    pre_threshold: str | float | None = "auto",
    threshold: str | ThresholdRule = "lrp",
    min_samples: int = 10,
    max_dets: int = 100,
    split_name: str = "calib",
) -> Calibrator:
    """Steps 1-4 of the FIT protocol on detections of one split (see the module docstring)."""
    if method not in METHODS:
        raise DetkitError(f"unknown calibration method {method!r}", hint=f"use one of: {', '.join(METHODS)}")
    if target not in TARGETS:
        raise DetkitError(f"unknown calibration target {target!r}", hint="use 'iou' or 'tp'")
    tau = default_iou(target) if iou is None else float(iou)
    if not 0.0 <= tau < 1.0:
        raise DetkitError(f"IoU threshold must be in [0, 1), got {tau}")
    rule = threshold if isinstance(threshold, ThresholdRule) else ThresholdRule.parse(threshold)
    if len(dets) == 0:
        raise DetkitError(
            f"no detections on the '{split_name}' split: nothing to calibrate",
            hint="check the model (or predictions file) and the split",
        )

    pre = _pre_thresholds(dets, gt, class_map, resolve_pre_threshold(pre_threshold, target), tau)
    kept = _keep_raw(dets, class_map, pre)
    m = select(kept, gt, tau, None, max_dets)
    labels = class_map.category_ids_to_labels(kept.category_ids[m.rows])
    targets = m.target_iou if target == "iou" else m.tp.astype(np.float64)
    no_gt_cats = set(m.match.category_ids[m.match.num_gt == 0].tolist())
    excluded = {
        k: f"no ground truth of this class in the '{split_name}' split"
        for k, c in enumerate(class_map.category_ids)
        if c in no_gt_cats
    }
    cal = fit_calibrator(m.scores, targets, labels, class_map, method, classwise, target, tau, min_samples, excluded)
    guard = None
    if method == "temperature":
        guard = _temperature_guard(cal, dets, kept, gt, class_map, max_dets, split_name)

    calibrated = apply_to_table(cal, kept, class_map)
    post = choose_thresholds(calibrated, gt, class_map, rule, _threshold_iou(rule, tau), max_dets)
    cal.pre_thresholds = pre.values if pre is not None else None
    cal.thresholds = post.values
    cal.threshold_rule = {"post": {k: v for k, v in post.to_dict(class_map).items() if k != "values"}}
    if pre is not None:
        cal.threshold_rule["pre"] = {k: v for k, v in pre.to_dict(class_map).items() if k != "values"}
    cal.fit_info = {
        "split": split_name,
        "num_images": len(gt.images),
        "num_detections": int(len(dets)),
        "num_fit_detections": int(len(m.scores)),
        "num_matched": int(np.count_nonzero(targets > 0)),
        "min_samples": int(min_samples),
        "max_dets": int(max_dets),
        "fit_region": "detections with raw score >= pre-threshold (the map covers all of [0, 1]; nothing is dropped)",
    }
    if method == "temperature":
        cal.fit_info["objective"] = temperature_objective(target)
        cal.fit_info["guard"] = guard
    return cal


def _fit_split_errors(
    cal: Calibrator, dets: DetectionTable, kept: DetectionTable, gt: CocoData, cm: ClassMap, max_dets: int
) -> dict[str, tuple[float | None, float | None]]:
    """(raw, calibrated) D-ECE of every detection and LaECE_0 of the fit detections, on the fit split."""
    out = {}
    cal_all, cal_kept = apply_to_table(cal, dets, cm), apply_to_table(cal, kept, cm)
    out["d_ece"] = tuple(
        d_ece(t, gt, 0.5, 10, D_ECE_SCORE_THRESHOLD, max_dets=max_dets)["value"] for t in (dets, cal_all)
    )
    out["la_ece_0"] = tuple(la_ece(t, gt, 0.0, 25, None, "kuzucu", max_dets)["value"] for t in (kept, cal_kept))
    return out  # type: ignore[return-value]


def _worse(raw: float | None, calibrated: float | None) -> bool:
    """Calibrated error above the raw one; an error that becomes defined (detections pushed over D-ECE's 0.3 cut)
    or undefined (all pushed under it) counts as worse: no improvement can be shown."""
    if raw is None or calibrated is None:
        return (raw is None) != (calibrated is None)
    return calibrated > raw + 1e-12


def _pct(v: float | None) -> str:
    return "undefined (no detection scored >= 0.3)" if v is None else f"{100 * v:.2f} %"


def _temperature_guard(
    cal: Calibrator,
    dets: DetectionTable,
    kept: DetectionTable,
    gt: CocoData,
    cm: ClassMap,
    max_dets: int,
    split_name: str,
) -> dict[str, Any]:
    """Temperature scaling never makes D-ECE (nor, for IoU targets, LaECE_0) worse on its own fit split: if it
    would, every class falls back to the identity and the reason is recorded in ``fallback``."""
    errors = _fit_split_errors(cal, dets, kept, gt, cm, max_dets)
    checked = ("d_ece",) if cal.target == "tp" else ("d_ece", "la_ece_0")
    worse = [k for k in checked if _worse(*errors[k])]
    guard = {
        "split": split_name,
        "checked": list(checked),
        "errors_raw_vs_calibrated": {k: list(v) for k, v in errors.items()},
        "identity": bool(worse),
    }
    if worse:
        names = {"d_ece": "D-ECE", "la_ece_0": "LaECE_0"}
        why = "; ".join(f"{names[k]} {_pct(errors[k][0])} -> {_pct(errors[k][1])}" for k in worse)
        reason = f"identity: temperature scaling would make the '{split_name}' split worse ({why})"
        cal.params = [identity_params("temperature") for _ in cal.params]
        for name in cm.names if cal.classwise else ("*",):
            cal.fallback[name] = reason
        guard["reason"] = reason
    return guard


OPERATING_POINT = (
    "the calibrator's operating point (raw score >= pre-threshold and calibrated score >= threshold "
    "of the class), the same detections for raw and calibrated scores"
)


def evaluate_calibrator(
    cal: Calibrator, dets: DetectionTable, gt: CocoData, class_map: ClassMap, max_dets: int = 100, ap: bool = True
) -> tuple[dict, dict, float | None, float | None]:
    """Calibration reports of the raw (before) and calibrated (after) detections of a held-out split, and AP.

    Every detection is calibrated (none is dropped); D-ECE sees all of them at its protocol threshold, the
    localisation-aware errors and LRP the detections at the operating point, the same ones before and after.
    """
    calibrated_all = apply_to_table(cal, dets, class_map)
    labels = class_map.category_ids_to_labels(dets.category_ids) if len(dets) else np.zeros(0, np.int64)
    keep = keep_mask(cal, dets.scores, calibrated_all.scores, labels) if len(dets) else np.zeros(0, bool)
    op = {"keep": keep, "keep_description": OPERATING_POINT}
    before = calibration_report(dets, gt, class_map, None, max_dets, **op)
    after = calibration_report(calibrated_all, gt, class_map, None, max_dets, **op)
    if not ap:
        return before, after, None, None
    return before, after, _ap(gt, dets, class_map), _ap(gt, calibrated_all, class_map)
