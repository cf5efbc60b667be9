"""Post-hoc confidence calibrators: one strictly increasing map of [0, 1] onto [0, 1] per class (or one for all).

Strictly increasing on all of [0, 1] means a calibrator never ties or reorders two detections of a class,
so per-class ranking, and with it COCO AP, is the raw model's (see docs/calibration.md):

- ``platt``: p' = sigmoid(a logit(p) + b) with a >= A_MIN > 0, fitted from a = 1, b = 0 by a bounded
  quasi-Newton solver on the mean binary cross-entropy with soft targets (IoU or 0/1), stable with-logits
  form; logit uses p clipped to [eps, 1 - eps] (float64 eps).
- ``temperature``: p' = sigmoid(logit(p) / T), T in [T_RANGE]; T is chosen to minimise the calibration error
  the calibrator is judged by (binned like D-ECE for ``target="tp"``, like LaECE_0 for ``target="iou"``), not a
  surrogate loss, and is 1 (identity) unless that error goes down.
- ``isotonic``: scikit-learn ``IsotonicRegression(increasing=True, y_min=0, y_max=1)`` on the fit detections,
  whose knots are extended to (0, 0) below the first and to (1, 1) above the last, then blended with the
  identity, y = (1 - ISO_BLEND) y_iso + ISO_BLEND x, which breaks every flat segment by the raw score. The
  stored knots are the final map: linear interpolation between them, strictly increasing, 0 at 0, 1 at 1.

A :class:`Calibrator` holds plain numbers only (what ``calibrator.json`` stores); applying it lives in
:mod:`detkit.calibration.apply`, once. Classes with too little data get the identity, with the reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError

METHODS = ("platt", "isotonic", "temperature")
TARGETS = ("iou", "tp")
_EPS64 = float(np.finfo(np.float64).eps)
A_MIN = 1e-3  # lower bound of Platt's slope a (a > 0: strictly increasing)
ISO_BLEND = 1e-3  # share of the identity blended into the isotonic map (breaks flat segments)
T_RANGE = (0.05, 20.0)  # temperatures searched


def identity_params(method: str) -> dict[str, Any]:
    """Parameters for which a method's map is the identity (on [eps, 1 - eps] for the sigmoid maps)."""
    if method == "platt":
        return {"a": 1.0, "b": 0.0}
    if method == "temperature":
        return {"T": 1.0}
    if method == "isotonic":
        return {"x": [0.0, 1.0], "y": [0.0, 1.0]}
    raise DetkitError(f"unknown calibration method {method!r}", hint=f"use one of: {', '.join(METHODS)}")


@dataclass
class Calibrator:
    """A fitted calibrator: per-class parameters (model label order) or one shared set, plus thresholds.

    ``params`` has one entry per class of ``class_map`` when ``classwise``, else exactly one entry.
    ``fallback`` maps class names that got the identity to the reason. ``pre_thresholds`` (on raw scores)
    and ``thresholds`` (on calibrated scores) are arrays over classes in model order; NaN keeps everything.
    """

    method: str
    classwise: bool
    target: str
    iou_threshold: float
    class_map: ClassMap
    params: list[dict[str, Any]]
    fallback: dict[str, str] = field(default_factory=dict)
    pre_thresholds: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    threshold_rule: dict[str, Any] = field(default_factory=dict)
    fit_info: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    format_version: int = 2  # of the calibrator.json it was read from (1: maps may be flat, see io.LEGACY_NOTE)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise DetkitError(f"unknown calibration method {self.method!r}", hint=f"use one of: {', '.join(METHODS)}")
        if self.target not in TARGETS:
            raise DetkitError(f"unknown calibration target {self.target!r}", hint="use 'iou' or 'tp'")
        expected = len(self.class_map) if self.classwise else 1
        if len(self.params) != expected:
            raise DetkitError(f"calibrator has {len(self.params)} parameter sets, expected {expected}")
        for thr in (self.pre_thresholds, self.thresholds):
            if thr is not None and len(thr) != len(self.class_map):
                raise DetkitError(f"calibrator thresholds have {len(thr)} entries for {len(self.class_map)} classes")

    def operate(self, dets: Any, class_map: ClassMap) -> tuple[Any, np.ndarray]:
        """(the table with calibrated scores, mask of the detections at the operating point: raw >= pre-threshold
        and calibrated >= threshold of the class); every detection is kept in the table."""
        from detkit.calibration.apply import apply_to_table, keep_mask

        calibrated = apply_to_table(self, dets, class_map)
        if not len(dets):
            return calibrated, np.zeros(0, bool)
        labels = class_map.category_ids_to_labels(dets.category_ids)
        return calibrated, keep_mask(self, dets.scores, calibrated.scores, labels)

    def params_for_label(self, label: int) -> dict[str, Any]:
        return self.params[label if self.classwise else 0]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS64, 1.0 - _EPS64)
    return np.log(p) - np.log1p(-p)


def _bce_with_logits(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-sample binary cross-entropy of sigmoid(x) against soft targets t, in the overflow-free form."""
    return np.maximum(x, 0.0) - x * t + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(x)


def fit_sigmoid(scores: np.ndarray, targets: np.ndarray, method: str = "platt") -> dict[str, float]:
    """Platt (a, b) minimising the mean BCE-with-logits against soft targets (``method="temperature"``: the
    same loss with b = 0, a = 1/T; kept for comparison, :func:`fit_temperature` is what calibrators use).

    The loss is convex in (a, b) (the logits are linear in them), so a bounded quasi-Newton solver
    (scipy L-BFGS-B with the analytic gradient, a >= A_MIN as a bound instead of |a|) finds the optimum that
    the reference's torch L-BFGS approaches; it starts from the identity (a = 1, b = 0).
    """
    from scipy.optimize import minimize

    z = _logit(np.asarray(scores, dtype=np.float64))
    t = np.asarray(targets, dtype=np.float64)
    n = len(z)
    with_bias = method == "platt"

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a = theta[0]
        b = theta[1] if with_bias else 0.0
        x = a * z + b
        r = (_sigmoid(x) - t) / n  # d loss / d x
        grad = [float(np.dot(r, z))] + ([float(r.sum())] if with_bias else [])
        return float(_bce_with_logits(x, t).mean()), np.asarray(grad)

    x0 = np.array([1.0, 0.0]) if with_bias else np.array([1.0])
    bounds = [(A_MIN if with_bias else 1.0 / T_RANGE[1], 1.0 / T_RANGE[0] if not with_bias else None)]
    bounds += [(None, None)] if with_bias else []
    res = minimize(
        loss_and_grad,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-10},
    )
    if not np.all(np.isfinite(res.x)):
        raise DetkitError(f"{method} scaling diverged (non-finite parameters)")
    if with_bias:
        return {"a": float(res.x[0]), "b": float(res.x[1])}
    return {"T": float(1.0 / res.x[0])}


def strict_knots(x: np.ndarray, y: np.ndarray, blend: float = ISO_BLEND) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a non-decreasing piecewise-linear map -> knots of a strictly increasing map of [0, 1] onto [0, 1].

    Adds (0, 0) below the first knot and (1, 1) above the last (a knot already at 0 or 1 keeps its value
    there), then blends with the identity: y' = (1 - blend) y + blend x. Since x is strictly increasing and
    y non-decreasing, y' is strictly increasing, also across formerly flat segments.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.clip(np.asarray(y, dtype=np.float64), 0.0, 1.0)
    if x[0] > 0.0:
        x, y = np.r_[0.0, x], np.r_[0.0, y]
    if x[-1] < 1.0:
        x, y = np.r_[x, 1.0], np.r_[y, 1.0]
    y = np.maximum.accumulate(y)
    return x, (1.0 - blend) * y + blend * x


def fit_isotonic(scores: np.ndarray, targets: np.ndarray) -> dict[str, list[float]]:
    """scikit-learn isotonic regression, made strictly increasing on [0, 1] (:func:`strict_knots`), as knots."""
    from sklearn.isotonic import IsotonicRegression

    p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    reg = IsotonicRegression(increasing=True, y_min=0.0, y_max=1.0, out_of_bounds="clip")
    reg.fit(p, np.asarray(targets, dtype=np.float64))
    x, y = strict_knots(reg.X_thresholds_, reg.y_thresholds_)
    return {"x": [float(v) for v in x], "y": [float(v) for v in y]}


def temperature_objective(target: str) -> str:
    return (
        "D-ECE (10 bins, binary targets, scores >= 0.3) of the fit detections"
        if target == "tp"
        else "LaECE_0 binning (25 bins, IoU targets) of the fit detections"
    )


def binned_error(p: np.ndarray, t: np.ndarray, target: str, raw_over_cut: bool | None = None) -> float:
    """The error temperature scaling minimises: the metric the target is judged by, on the fit detections.

    ``iou``: LaECE_0's 25 bins (Kuzucu edges) with IoU targets. ``tp``: D-ECE (10 bins, netcal edges, binary
    targets) over the scores >= 0.3, its protocol cut. A temperature that moves every score under the cut, or
    the first scores over it (``raw_over_cut``: whether the raw scores had any), changes what D-ECE measures
    rather than making scores right, so it scores infinity; when no raw score reaches the cut, the same 10 bins
    over every fit detection are used instead.
    """
    from detkit.evaluation.calibration_metrics import D_ECE_SCORE_THRESHOLD, binned_class_error, detection_ece

    if len(p) == 0:
        return 0.0
    if target != "tp":
        return float(binned_class_error(p, t, np.zeros(len(p), np.int64), 1, 25, "kuzucu")[0][0])
    over = p >= D_ECE_SCORE_THRESHOLD
    if raw_over_cut is not None and bool(over.any()) != raw_over_cut:
        return float("inf")
    return detection_ece(p[over], t[over], 10)[0] if over.any() else detection_ece(p, t, 10)[0]


def temperature_map(p: np.ndarray, T: float) -> np.ndarray:
    z = _logit(p)
    return _sigmoid(z / T)


def fit_temperature(scores: np.ndarray, targets: np.ndarray, target: str = "iou") -> dict[str, float]:
    """T in T_RANGE minimising :func:`binned_error` (a grid over log T, then a bounded 1-D refinement)."""
    from scipy.optimize import minimize_scalar

    from detkit.evaluation.calibration_metrics import D_ECE_SCORE_THRESHOLD

    p = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    raw_over_cut = bool(np.any(p >= D_ECE_SCORE_THRESHOLD))

    def err(log_t: float) -> float:
        return binned_error(temperature_map(p, float(np.exp(log_t))), t, target, raw_over_cut)

    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    grid = np.linspace(lo, hi, 121)
    values = np.asarray([err(g) for g in grid])
    k = int(np.argmin(values))
    best_log, best = float(grid[k]), float(values[k])
    if not np.isfinite(best):
        return {"T": 1.0, "objective": best, "objective_identity": err(0.0)}
    res = minimize_scalar(
        err, bounds=(grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]), method="bounded", options={"xatol": 1e-4}
    )
    if res.success and float(res.fun) < best:
        best_log, best = float(res.x), float(res.fun)
    return {"T": float(np.exp(best_log)), "objective": best, "objective_identity": err(0.0)}


def fit_map(method: str, scores: np.ndarray, targets: np.ndarray, target: str = "iou") -> dict[str, Any]:
    if method == "isotonic":
        return fit_isotonic(scores, targets)
    if method == "platt":
        return fit_sigmoid(scores, targets, method)
    if method == "temperature":
        return fit_temperature(scores, targets, target)
    raise DetkitError(f"unknown calibration method {method!r}", hint=f"use one of: {', '.join(METHODS)}")


def fit_calibrator(
    scores: np.ndarray,
    targets: np.ndarray,
    labels: np.ndarray,
    class_map: ClassMap,
    method: str = "isotonic",
    classwise: bool = True,
    target: str = "iou",
    iou_threshold: float = 0.0,
    min_samples: int = 10,
    excluded: dict[int, str] | None = None,
) -> Calibrator:
    """Fit from per-detection (score, target, label) arrays (labels in model order 0..K-1).

    A class gets the identity (recorded in ``fallback``) when it is in ``excluded`` (label -> reason, e.g. no
    GT in the split), has fewer than ``min_samples`` detections, or has no detection with a positive target
    (nothing to learn the upper part of the map from). Class-agnostic fits pool every non-excluded class.
    """
    if method not in METHODS:
        raise DetkitError(f"unknown calibration method {method!r}", hint=f"use one of: {', '.join(METHODS)}")
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if np.any((scores < 0) | (scores > 1)) or not np.all(np.isfinite(scores)):
        raise DetkitError(
            "calibration needs scores in [0, 1]", hint="pass probabilities (after the sigmoid), not logits"
        )
    excluded = dict(excluded or {})
    usable = ~np.isin(labels, np.asarray(list(excluded), dtype=np.int64))

    def reason(mask: np.ndarray) -> str | None:
        n = int(mask.sum())
        if n < min_samples:
            return f"identity: {n} detection{'s' if n != 1 else ''} to fit (fewer than {min_samples})"
        if not np.any(targets[mask] > 0):
            return "identity: every target is 0 (no detection matched a ground-truth box)"
        return None

    fallback: dict[str, str] = {}
    if classwise:
        params = []
        for label, name in enumerate(class_map.names):
            if label in excluded:
                fallback[name] = f"identity: {excluded[label]}"
                params.append(identity_params(method))
                continue
            mask = usable & (labels == label)
            why = reason(mask)
            if why:
                fallback[name] = why
                params.append(identity_params(method))
            else:
                params.append(_checked(method, fit_map(method, scores[mask], targets[mask], target), name, fallback))
    else:
        why = reason(usable)
        if why:
            fallback["*"] = why
            params = [identity_params(method)]
        else:
            params = [_checked(method, fit_map(method, scores[usable], targets[usable], target), "*", fallback)]
    return Calibrator(method, classwise, target, float(iou_threshold), class_map, params, fallback)


def _checked(method: str, params: dict[str, Any], name: str, fallback: dict[str, str]) -> dict[str, Any]:
    """Temperature keeps the identity unless it lowers the error it was fitted on (the reason is recorded)."""
    if method != "temperature":
        return params
    best, ident = params.pop("objective"), params.pop("objective_identity")
    if not (np.isfinite(best) and best < ident - 1e-12):
        fallback[name] = (
            f"identity: no temperature lowers the fit split's error ({100 * ident:.2f} % at T = 1, "
            f"best {100 * best:.2f} % at T = {params['T']:.3g})"
        )
        return identity_params(method)
    return params
