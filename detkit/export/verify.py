"""Does the exported graph agree with PyTorch? Measured, not assumed.

The same images (random noise, a smooth synthetic scene and, when given, real images of any size) go through
the PyTorch ``Detector`` (plus the calibrator's numpy ``apply``) and through onnxruntime at batch 1 and batch N.

Detections are compared per image after pairing every PyTorch detection with the onnxruntime detection of
the same label that is closest in (box, score); pairing rather than comparing rank by rank keeps two
detections whose scores tie to 1e-7 (and so may swap ranks) from looking like a 600-pixel error. Detections
at the very tail of the top-k (score within tolerance of the last kept one) may legitimately be replaced by a
tied candidate (score within a tenth of the tolerance of the last kept one) only count when they pair closely. Reported:

- ``max_abs_diff_scores``: max |Δ score| of the model's raw (uncalibrated) scores;
- ``max_calibration_error``: for graphs with a calibrator, the distance of the calibrated scores from the
  calibrator's numpy apply of the graph's raw scores (see :func:`calibration_error`);
- ``max_abs_diff_boxes_px`` and ``max_abs_diff_boxes`` (the latter divided by the image side, i.e. normalised
  coordinates, which is what the tolerance applies to);
- ``top{k}_label_agreement``: fraction of the first k ranks with the same label in both runtimes;
- ``top{k}_order_agreement``: fraction of the first k PyTorch detections paired with the same rank.

Tolerances: fp32 1e-4 on scores and normalised boxes. fp16 graphs compute in half precision (10-bit
mantissa, ~1e-3 relative) through a deep network, so their bounds are 2e-2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from detkit.errors import DetkitError

TOLERANCES = {"fp32": {"scores": 1e-4, "boxes": 1e-4}, "fp16": {"scores": 2e-2, "boxes": 2e-2}}
TOP_K_AGREEMENT = 10
CALIBRATION_EPS = 1e-6  # raw-score neighbourhood for the calibrated-score check (float32 rounding is ~6e-8)


@dataclass
class ParityReport:
    batch_sizes: list[int]
    num_images: int
    image_kinds: dict[str, int]
    max_abs_diff_scores: float
    max_abs_diff_boxes: float
    max_abs_diff_boxes_px: float
    top_k: int
    topk_label_agreement: float
    topk_order_agreement: float
    unpaired: int
    tolerance: dict[str, float]
    precision: str
    passed: bool
    max_calibration_error: float = 0.0
    per_batch: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"max |Δscore| {self.max_abs_diff_scores:.2e}, max |Δbox| {self.max_abs_diff_boxes:.2e} (normalised) / "
            f"{self.max_abs_diff_boxes_px:.2e} px, top-{self.top_k} labels {self.topk_label_agreement:.0%}, "
            f"order {self.topk_order_agreement:.0%}, calibrator |Δ| {self.max_calibration_error:.1e}, batches {self.batch_sizes}, {self.num_images} images "
            f"(tolerance {self.tolerance['scores']:g} {self.precision})"
        )


def verification_images(real: Sequence[Any] = (), seed: int = 0) -> tuple[list[np.ndarray], dict[str, int]]:
    """Two random-noise images and one smooth synthetic scene of different sizes, plus ``real`` images (paths or arrays).

    The sizes differ from each other and from the model input so the resize and the box scaling are exercised.
    """
    from detkit.models.preprocess import as_image

    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((480, 640), (640, 427))]
    h, w = 375, 500
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / rng.uniform(8, 40) + c) * np.cos(yy / rng.uniform(8, 40)) for c in range(3)], -1)
    y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    img[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(0, 256, 3)
    smooth = [np.clip(img, 0, 255).astype(np.uint8)]
    loaded = [as_image(r, i) for i, r in enumerate(real)]
    return noise + smooth + loaded, {"random": len(noise), "synthetic": len(smooth), "real": len(loaded)}


def compare_detections(ref: Sequence[Any], test: Sequence[Any], image_sizes: Sequence[tuple[int, int]], tol_scores: float,
                       top_k: int = TOP_K_AGREEMENT) -> dict[str, float]:
    """Pairwise comparison of two lists of per-image detections (objects with labels, boxes xyxy px, scores)."""
    d_scores, d_boxes, d_px, label_agree, order_agree, unpaired, ranks = 0.0, 0.0, 0.0, 0, 0, 0, 0
    for r, t, (h, w) in zip(ref, test, image_sizes):
        rl, rb, rs = np.asarray(r.labels), np.asarray(r.boxes, np.float64), np.asarray(r.scores, np.float64)
        tl, tb, ts = np.asarray(t.labels), np.asarray(t.boxes, np.float64), np.asarray(t.scores, np.float64)
        scale = np.array([w, h, w, h], np.float64)
        box_diff = np.abs(rb[:, None, :] - tb[None, :, :]) / scale  # [R, T, 4]
        cost = np.maximum(box_diff.max(-1), np.abs(rs[:, None] - ts[None, :]))
        cost[rl[:, None] != tl[None, :]] = np.inf
        j = cost.argmin(1) if len(tl) else np.zeros(len(rl), np.int64)
        best = cost[np.arange(len(rl)), j] if len(tl) else np.full(len(rl), np.inf)
        # at the tail of the top-k a candidate tied with the last kept one (within a tenth of the tolerance) may be
        # replaced by another: such detections only count when they do pair closely
        tail = rs <= (rs.min() + tol_scores / 10) if len(rs) else rs.astype(bool)
        counted = np.isfinite(best) & (~tail | (best <= tol_scores))
        unpaired += int(np.sum(~tail & ~np.isfinite(best)))
        if counted.any():
            rows = np.flatnonzero(counted)
            d_scores = max(d_scores, float(np.abs(rs[rows] - ts[j[rows]]).max()))
            d_boxes = max(d_boxes, float(box_diff[rows, j[rows]].max()))
            d_px = max(d_px, float(np.abs(rb[rows] - tb[j[rows]]).max()))
        k = min(top_k, len(rl), len(tl))
        label_agree += int(np.sum(rl[:k] == tl[:k]))
        order_agree += int(np.sum(j[:k] == np.arange(k)))
        ranks += k
    return {
        "max_abs_diff_scores": d_scores, "max_abs_diff_boxes": d_boxes, "max_abs_diff_boxes_px": d_px,
        "topk_label_agreement": label_agree / max(ranks, 1), "topk_order_agreement": order_agree / max(ranks, 1),
        "unpaired": unpaired,
    }


def calibration_error(calibrate_numpy, labels: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, eps: float = CALIBRATION_EPS) -> float:
    """How far the graph's calibrated scores are from the calibrator applied to the graph's own raw scores.

    A calibrator is monotone, so an exact implementation lies in [f(raw - eps), f(raw + eps)]: the distance to that
    interval ignores float32 rounding of the raw score, which a steep isotonic step would otherwise amplify."""
    lo = calibrate_numpy(np.clip(raw.astype(np.float64) - eps, 0.0, 1.0), labels)
    hi = calibrate_numpy(np.clip(raw.astype(np.float64) + eps, 0.0, 1.0), labels)
    c = calibrated.astype(np.float64)
    return float(np.max(np.maximum(lo - c, 0.0) + np.maximum(c - hi, 0.0), initial=0.0))


def verify_parity(reference, onnx_detector, calibrate_numpy=None, real_images: Sequence[Any] = (), batch_sizes: Sequence[int] = (1, 3),
                  precision: str = "fp32", seed: int = 0) -> ParityReport:
    """Run the same images through ``reference`` (PyTorch ``Detector``) and ``onnx_detector`` and compare.

    The model part is compared on raw (uncalibrated) scores. When the graph embeds a calibrator,
    ``calibrate_numpy(scores, labels) -> scores`` (the calibrator's numpy apply) checks the graph's calibrated
    scores against its raw scores (:func:`calibration_error`), so a steep calibration map cannot turn a 1e-7 raw
    difference into a false alarm, and a wrong calibrator in the graph cannot hide.
    """
    images, kinds = verification_images(real_images, seed=seed)
    sizes = [im.shape[:2] for im in images]
    ref = reference.predict(images, conf=-1.0)
    tol = TOLERANCES[precision]
    per_batch: dict[str, dict[str, float]] = {}
    for b in batch_sizes:
        outputs = onnx_detector.infer(images, batch_size=b)
        test = [SimpleNamespace(labels=lab, boxes=box, scores=raw) for lab, box, _, raw in outputs]
        per_batch[str(b)] = compare_detections(ref, test, sizes, tol["scores"])
        per_batch[str(b)]["max_calibration_error"] = (
            max(calibration_error(calibrate_numpy, lab, raw, cal) for lab, _, cal, raw in outputs) if calibrate_numpy is not None else 0.0
        )
    keys = ("max_abs_diff_scores", "max_abs_diff_boxes", "max_abs_diff_boxes_px", "unpaired", "max_calibration_error")
    worst = {key: max(v[key] for v in per_batch.values()) for key in keys}
    agree = {key: min(v[key] for v in per_batch.values()) for key in ("topk_label_agreement", "topk_order_agreement")}
    passed = (worst["max_abs_diff_scores"] <= tol["scores"] and worst["max_abs_diff_boxes"] <= tol["boxes"] and worst["unpaired"] == 0
              and worst["max_calibration_error"] <= tol["scores"])
    return ParityReport(
        batch_sizes=list(batch_sizes), num_images=len(images), image_kinds=kinds,
        max_abs_diff_scores=worst["max_abs_diff_scores"], max_abs_diff_boxes=worst["max_abs_diff_boxes"],
        max_abs_diff_boxes_px=worst["max_abs_diff_boxes_px"], top_k=TOP_K_AGREEMENT,
        topk_label_agreement=agree["topk_label_agreement"], topk_order_agreement=agree["topk_order_agreement"],
        unpaired=int(worst["unpaired"]), tolerance=dict(tol), precision=precision, passed=bool(passed),
        max_calibration_error=worst["max_calibration_error"], per_batch=per_batch,
    )


def parity_error(report: ParityReport, path) -> DetkitError:
    return DetkitError(
        f"exported graph disagrees with PyTorch: {report.summary()}",
        hint="no model file was written; try another --opset, drop --fp16/--simplify, or re-run with --debug and report it",
        path=path,
    )
