"""Post-hoc confidence calibrators: fit one monotone map score -> calibrated score per class (or one for all).

- ``platt``: p' = sigmoid(a logit(p) + b) with a >= 0 (monotone), fitted from a = 1, b = 0 by L-BFGS on the
  mean binary cross-entropy with soft targets (IoU or 0/1) in the stable with-logits form; logit uses p
  clipped to [eps, 1 - eps] (float64 eps).
- ``temperature``: p' = sigmoid(logit(p) / T), same loss and optimiser (a one-parameter baseline: no bias).
- ``isotonic``: scikit-learn ``IsotonicRegression(increasing=True, y_min=0, y_max=1, out_of_bounds="clip")``
  stored as its knots; prediction is linear interpolation between knots, end values outside them.

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


def fit_sigmoid(scores: np.ndarray, targets: np.ndarray, method: str) -> dict[str, float]:
    """Platt (a, b) or temperature (T) minimising the mean BCE-with-logits against soft targets.

    The loss is convex in (a, b) (the logits are linear in them), so a bounded quasi-Newton solver
    (scipy L-BFGS-B with the analytic gradient, a >= 0 as a bound instead of |a|) finds the optimum that
    the reference's torch L-BFGS approaches; it starts from the identity (a = 1, b = 0). Temperature is
    fitted as a = 1/T >= 1e-6 with b = 0.
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
    bounds = [(0.0 if with_bias else 1e-6, None)] + ([(None, None)] if with_bias else [])
    res = minimize(loss_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-10})
    if not np.all(np.isfinite(res.x)):
        raise DetkitError(f"{method} scaling diverged (non-finite parameters)")
    if with_bias:
        return {"a": float(res.x[0]), "b": float(res.x[1])}
    return {"T": float(1.0 / res.x[0])}


def fit_isotonic(scores: np.ndarray, targets: np.ndarray) -> dict[str, list[float]]:
    """scikit-learn isotonic regression, stored as its interpolation knots."""
    from sklearn.isotonic import IsotonicRegression

    reg = IsotonicRegression(increasing=True, y_min=0.0, y_max=1.0, out_of_bounds="clip")
    reg.fit(np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=np.float64))
    return {"x": [float(v) for v in reg.X_thresholds_], "y": [float(v) for v in reg.y_thresholds_]}


def fit_map(method: str, scores: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    if method == "isotonic":
        return fit_isotonic(scores, targets)
    if method in ("platt", "temperature"):
        return fit_sigmoid(scores, targets, method)
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
        raise DetkitError("calibration needs scores in [0, 1]", hint="pass probabilities (after the sigmoid), not logits")
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
                params.append(fit_map(method, scores[mask], targets[mask]))
    else:
        why = reason(usable)
        if why:
            fallback["*"] = why
            params = [identity_params(method)]
        else:
            params = [fit_map(method, scores[usable], targets[usable])]
    return Calibrator(method, classwise, target, float(iou_threshold), class_map, params, fallback)
