"""Applying a calibrator: ONE implementation, in torch ops that export to ONNX (opset 17), with numpy entry points.

:class:`CalibrationModule` maps ``(scores, labels)`` of any shape to calibrated scores: per-label
parameters are gathered by label and evaluated with elementwise ops only (no searchsorted, no control flow):

- sigmoid maps (Platt, temperature): sigmoid(a[label] * logit(clamp(p, eps, 1 - eps)) + b[label]), eps the
  float64 machine epsilon as in the fit (temperature T is a = 1/T, b = 0);
- isotonic: y0[label] + sum_j slope[label, j] * min(relu(p - x[label, j]), width[label, j]), i.e. linear
  interpolation between knots and the end values outside them; knots are padded per class with zero-width
  segments.

The output is clamped to [0, 1]; arithmetic is float64 inside, the result has the input's dtype.
:func:`calibrate_scores` (numpy) runs the same module.

Every map is strictly increasing, so no detection is dropped or reordered by default. The operating point
(raw score >= pre-threshold and calibrated score >= threshold of the label) is applied by ``predict``;
only ``drop_below_threshold=True`` applies it here, by setting the score of every detection outside it to 0
(what an ONNX graph exported with ``drop_below_threshold`` outputs).
"""

from __future__ import annotations

import numpy as np
import torch

from detkit.calibration.calibrators import Calibrator
from detkit.data.classmap import ClassMap
from detkit.evaluation.detections import DetectionTable


def _per_label(cal: Calibrator) -> list[dict]:
    return [cal.params_for_label(k) for k in range(len(cal.class_map))]


def _threshold_buffer(values: np.ndarray | None, n: int) -> torch.Tensor:
    if values is None:
        return torch.full((n,), float("-inf"), dtype=torch.float64)
    v = np.asarray(values, dtype=np.float64)
    return torch.as_tensor(np.where(np.isfinite(v), v, -np.inf))


class CalibrationModule(torch.nn.Module):
    """``forward(scores, labels) -> calibrated scores`` (same shape and dtype as ``scores``)."""

    def __init__(self, cal: Calibrator, drop_below_threshold: bool = False):
        super().__init__()
        self.drop_below_threshold = bool(drop_below_threshold)
        self.kind = "isotonic" if cal.method == "isotonic" else "sigmoid"
        params = _per_label(cal)
        n = len(params)
        if self.kind == "sigmoid":
            if cal.method == "platt":
                a = [float(p["a"]) for p in params]
                b = [float(p["b"]) for p in params]
            else:
                a = [1.0 / float(p["T"]) for p in params]
                b = [0.0] * n
            self.register_buffer("a", torch.tensor(a, dtype=torch.float64))
            self.register_buffer("b", torch.tensor(b, dtype=torch.float64))
        else:
            m = max(len(p["x"]) for p in params)
            x = np.zeros((n, m))
            y0 = np.zeros(n)
            slope = np.zeros((n, max(m - 1, 1)))
            width = np.zeros((n, max(m - 1, 1)))
            for k, p in enumerate(params):
                px, py = np.asarray(p["x"], np.float64), np.asarray(p["y"], np.float64)
                x[k, : len(px)] = px
                x[k, len(px) :] = px[-1]
                y0[k] = py[0]
                if len(px) > 1:
                    w = np.diff(px)
                    width[k, : len(w)] = w
                    slope[k, : len(w)] = np.divide(np.diff(py), w, out=np.zeros_like(w), where=w > 0)
            self.register_buffer("x", torch.as_tensor(x[:, : max(m - 1, 1)] if m > 1 else x))
            self.register_buffer("y0", torch.as_tensor(y0))
            self.register_buffer("slope", torch.as_tensor(slope))
            self.register_buffer("width", torch.as_tensor(width))
        self.register_buffer("pre_thresholds", _threshold_buffer(cal.pre_thresholds, n))
        self.register_buffer("thresholds", _threshold_buffer(cal.thresholds, n))

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Computed in float64 whatever the input dtype, so float32 graphs (ONNX) give the numpy numbers up to
        # the final rounding, also at scores of exactly 0 or 1.
        p = scores.to(torch.float64)
        if self.kind == "sigmoid":
            eps = float(torch.finfo(torch.float64).eps)
            p = p.clamp(eps, 1.0 - eps)
            z = torch.log(p) - torch.log1p(-p)
            out = torch.sigmoid(self.a[labels] * z + self.b[labels])
        else:
            seg = torch.minimum(torch.relu(p.unsqueeze(-1) - self.x[labels]), self.width[labels])
            out = self.y0[labels] + (self.slope[labels] * seg).sum(-1)
        out = out.clamp(0.0, 1.0)
        if self.drop_below_threshold:
            out = torch.where(self.keep(scores, out, labels), out, torch.zeros_like(out))
        return out.to(scores.dtype)

    def keep(self, raw_scores: torch.Tensor, calibrated: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Operating point: raw score >= pre-threshold and calibrated score >= threshold of the label."""
        return (raw_scores.to(torch.float64) >= self.pre_thresholds[labels]) & (
            calibrated.to(torch.float64) >= self.thresholds[labels]
        )


def calibrate_scores(
    cal: Calibrator, scores: np.ndarray, labels: np.ndarray, drop_below_threshold: bool = False
) -> np.ndarray:
    """numpy entry point: calibrated scores (float64) for label indices in model order."""
    module = CalibrationModule(cal, drop_below_threshold)
    with torch.no_grad():
        out = module(
            torch.as_tensor(np.asarray(scores, dtype=np.float64)), torch.as_tensor(np.asarray(labels, dtype=np.int64))
        )
    return out.numpy()


def keep_mask(cal: Calibrator, raw_scores: np.ndarray, calibrated: np.ndarray, labels: np.ndarray) -> np.ndarray:
    module = CalibrationModule(cal)
    with torch.no_grad():
        return module.keep(
            torch.as_tensor(np.asarray(raw_scores, np.float64)),
            torch.as_tensor(np.asarray(calibrated, np.float64)),
            torch.as_tensor(np.asarray(labels, np.int64)),
        ).numpy()


def apply_to_table(
    cal: Calibrator, table: DetectionTable, class_map: ClassMap, thresholds: bool = False
) -> DetectionTable:
    """Calibrated copy of ``table`` (original category ids). With ``thresholds`` also keep only detections at
    the calibrator's operating point (raw >= pre-threshold, calibrated >= threshold).

    ``class_map`` is the class map of the detections; it must be the calibrator's.
    """
    cal.class_map.check_same(
        class_map, "the calibrator", "the detections", hint="use a calibrator fitted for this model and dataset"
    )
    labels = class_map.category_ids_to_labels(table.category_ids) if len(table) else np.zeros(0, np.int64)
    calibrated = calibrate_scores(cal, table.scores, labels)
    out = table.with_scores(calibrated)
    if thresholds:
        out = out.subset(keep_mask(cal, table.scores, calibrated, labels))
    return out
