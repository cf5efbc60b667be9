"""Does the exported graph agree with PyTorch? Measured, not assumed.

The same images (random noise, a smooth synthetic scene and, when given, real images of any size) go through
the PyTorch ``Detector`` (plus the calibrator's numpy ``apply``) and through onnxruntime at batch 1 and batch N.

Detections are compared per image as sets, not rank by rank: every detection must have a twin on the other side
(same label, score and normalised box within tolerance), paired one to one by the Hungarian algorithm
(:func:`compare_detections`). Scores that tie within the tolerance may therefore come in any order: an untrained
model, whose scores crowd into a narrow band, verifies like a trained one, while a detection that moved, changed
label or score, or a box handed to another detection still fails. At the cut of the top-k, a detection whose
score is within tolerance of PyTorch's last kept one may be swapped for a tied candidate and needs no twin.
Reported:

- ``max_abs_diff_scores``: max |Δ score| of the model's raw (uncalibrated) scores;
- ``max_calibration_error``: for graphs with a calibrator, the distance of the calibrated scores from the
  calibrator's numpy apply of the graph's raw scores (see :func:`calibration_error`);
- ``max_abs_diff_boxes_px`` and ``max_abs_diff_boxes`` (the latter divided by the image side, i.e. normalised
  coordinates, which is what the tolerance applies to);
- ``unpaired``: detections (either side) that needed a twin and have none; ``unpaired_example`` names one;
- ``query_swaps``: decoder queries whose detections differ because the model's query selection had a tie at
  its cut (a token scoring within tolerance of the last kept one), which rounding may settle either way;
- ``top{k}_label_agreement``: fraction of the first k PyTorch detections that have a twin;
- ``top{k}_order_agreement``: fraction of the first k PyTorch detections whose twin has the same rank
  (informational: tied scores may swap ranks).

Tolerances: fp32 1e-4 on scores and normalised boxes. fp16 graphs compute in half precision (10-bit
mantissa, ~1e-3 relative) through a deep network, so their bounds are 2e-2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from detkit.export.errors import ExportError

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
    unpaired_example: str = ""
    query_swaps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        missing = (
            f"{self.unpaired} detection(s) without a twin, e.g. {self.unpaired_example}; " if self.unpaired else ""
        )
        return missing + (
            f"twins' max |Δscore| {self.max_abs_diff_scores:.2e}, max |Δbox| {self.max_abs_diff_boxes:.2e} "
            f"(normalised) / {self.max_abs_diff_boxes_px:.2e} px, top-{self.top_k} labels "
            f"{self.topk_label_agreement:.0%}, order {self.topk_order_agreement:.0%}, calibrator |Δ| "
            f"{self.max_calibration_error:.1e}, batches {self.batch_sizes}, {self.num_images} images "
            f"(tolerance {self.tolerance['scores']:g} {self.precision})"
        )


def verification_images(real: Sequence[Any] = (), seed: int = 0) -> tuple[list[np.ndarray], dict[str, int]]:
    """Two random-noise images and one smooth synthetic scene of different sizes, plus ``real`` images
    (paths or arrays).

    The sizes differ from each other and from the model input so the resize and the box scaling are exercised.
    """
    from detkit.data.images import as_image

    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((480, 640), (640, 427))]
    h, w = 375, 500
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [128 + 100 * np.sin(xx / rng.uniform(8, 40) + c) * np.cos(yy / rng.uniform(8, 40)) for c in range(3)], -1
    )
    y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    img[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(0, 256, 3)
    smooth = [np.clip(img, 0, 255).astype(np.uint8)]
    loaded = [as_image(r, i) for i, r in enumerate(real)]
    return noise + smooth + loaded, {"random": len(noise), "synthetic": len(smooth), "real": len(loaded)}


def _twins(rl, rb, rs, tl, tb, ts, scale, tol_s: float, tol_b: float):
    """One-to-one pairing of two detection lists of one image: ``(ref index, test index, feasible, cost)``.

    A pair is feasible (twins) when the labels are equal and the score and every normalised box coordinate differ
    by at most the tolerance. Of all one-to-one pairings the Hungarian algorithm picks one with the most twins (then
    the smallest sum of normalised differences), so detections whose scores tie may come in any order."""
    from scipy.optimize import linear_sum_assignment

    ds = np.abs(rs[:, None] - ts[None, :])
    db = (np.abs(rb[:, None, :] - tb[None, :, :]) / scale).max(-1) if ds.size else ds
    same = rl[:, None] == tl[None, :]
    closeness = np.where(same, np.maximum(ds / tol_s, db / tol_b), np.inf)  # in tolerances; 1 = at the bound
    feasible = closeness <= 1.0
    # an infeasible pair costs more than all feasible ones together: the assignment maximises the twins first
    ri, ti = linear_sum_assignment(np.where(feasible, closeness, 2.0 * (min(ds.shape) + 1)))
    return ri, ti, feasible[ri, ti], closeness


def _describe(side: str, other: str, image: str, label, score: float, box, nearest: float) -> str:
    near = (
        f"the nearest {other} detection of that label is {nearest:.3g} tolerances away"
        if np.isfinite(nearest)
        else f"{other} has no detection of that label"
    )
    return (
        f"{image}: {side} detection label {int(label)}, score {score:.6f}, box "
        f"[{', '.join(f'{v:.1f}' for v in box)}] px has no twin ({near})"
    )


def compare_detections(
    ref: Sequence[Any],
    test: Sequence[Any],
    image_sizes: Sequence[tuple[int, int]],
    tol_scores: float,
    top_k: int = TOP_K_AGREEMENT,
    tol_boxes: float | None = None,
    image_names: Sequence[str] | None = None,
    swappable: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Tie-robust comparison of two lists of per-image detections (objects with labels, boxes xyxy px, scores).

    Every detection must have a twin on the other side: same label, score within ``tol_scores`` and every box
    coordinate within ``tol_boxes`` of the image side (see :func:`_twins`); the order of tied scores is free.
    Both lists are the top-k of many candidates, so at the cut a detection whose score is within tolerance of
    PyTorch's last kept one may be swapped for a tied candidate: such tail detections need no twin (they are
    compared when they have one). Differences are measured over the twins; ``unpaired`` counts the detections
    of both sides that needed a twin and have none, ``unpaired_example`` describes the first of them.

    ``swappable[i]`` is how many of image i's decoder queries sit on a tie at the model's query selection (see
    :func:`query_ties`): the two runtimes may keep different ones of tied tokens, and every detection of
    such a query then differs. Up to that many queries per side (a query's detections share one box) may go
    without twins; they are counted in ``query_swaps``."""
    tol_boxes = tol_scores if tol_boxes is None else tol_boxes
    d_scores, d_boxes, d_px, agree, order_agree, unpaired, ranks, example, swaps = 0.0, 0.0, 0.0, 0, 0, 0, 0, "", 0
    for n, (r, t, (h, w)) in enumerate(zip(ref, test, image_sizes)):
        rl, rb, rs = (
            np.asarray(r.labels),
            np.asarray(r.boxes, np.float64).reshape(-1, 4),
            np.asarray(r.scores, np.float64),
        )
        tl, tb, ts = (
            np.asarray(t.labels),
            np.asarray(t.boxes, np.float64).reshape(-1, 4),
            np.asarray(t.scores, np.float64),
        )
        scale = np.array([w, h, w, h], np.float64)
        ri, ti, ok, closeness = _twins(rl, rb, rs, tl, tb, ts, scale, tol_scores, tol_boxes)
        ri, ti = ri[ok], ti[ok]
        if len(ri):
            d_scores = max(d_scores, float(np.abs(rs[ri] - ts[ti]).max()))
            d_px = max(d_px, float(np.abs(rb[ri] - tb[ti]).max()))
            d_boxes = max(d_boxes, float((np.abs(rb[ri] - tb[ti]) / scale).max()))
        cut = rs.min() + tol_scores if len(rs) else -np.inf
        r_twin, t_twin = np.zeros(len(rs), bool), np.zeros(len(ts), bool)
        r_twin[ri], t_twin[ti] = True, True
        r_missing, t_missing = np.flatnonzero(~r_twin & (rs > cut)), np.flatnonzero(~t_twin & (ts > cut))
        allowed = int(swappable[n]) if swappable is not None else 0
        r_queries, t_queries = len(np.unique(rb[r_missing], axis=0)), len(np.unique(tb[t_missing], axis=0))
        if allowed and max(r_queries, t_queries) <= allowed:
            swaps += max(r_queries, t_queries)
            r_missing, t_missing = r_missing[:0], t_missing[:0]
        unpaired += len(r_missing) + len(t_missing)
        if not example and (len(r_missing) or len(t_missing)):
            image = f"{image_names[n] if image_names is not None else f'image {n}'} ({h}×{w})"
            if len(r_missing):
                i = r_missing[0]
                example = _describe(
                    "PyTorch", "onnxruntime", image, rl[i], rs[i], rb[i], closeness[i].min(initial=np.inf)
                )
            else:
                j = t_missing[0]
                example = _describe(
                    "onnxruntime", "PyTorch", image, tl[j], ts[j], tb[j], closeness[:, j].min(initial=np.inf)
                )
        k = min(top_k, len(rl))
        partner = np.full(len(rl), -1)
        partner[ri] = ti
        agree += int(np.sum(partner[:k] >= 0))
        order_agree += int(np.sum(partner[:k] == np.arange(k)))
        ranks += k
    return {
        "max_abs_diff_scores": d_scores,
        "max_abs_diff_boxes": d_boxes,
        "max_abs_diff_boxes_px": d_px,
        "topk_label_agreement": agree / max(ranks, 1),
        "topk_order_agreement": order_agree / max(ranks, 1),
        "unpaired": unpaired,
        "unpaired_example": example,
        "query_swaps": swaps,
    }


def query_ties(token_scores, num_queries: int, tol: float) -> list[int]:
    """Per image, how many decoder queries sit on a tie at the query selection: the model keeps the ``num_queries``
    tokens with the best score (``token_scores`` ``[B, T]``), so where kept and dropped tokens score within ``tol``
    of the cut, min(kept, dropped) of them can change places under rounding."""
    import torch

    best = token_scores.detach().float().sort(dim=1, descending=True).values
    cut = best[:, num_queries - 1 : num_queries]
    kept = ((best[:, :num_queries] - cut) <= tol).sum(1)
    dropped = ((cut - best[:, num_queries:]) <= tol).sum(1)
    return torch.minimum(kept, dropped).tolist()


def predict_with_ties(reference, images: Sequence[Any], tol: float) -> tuple[list[Any], list[int] | None]:
    """``reference``'s detections of ``images`` (every score kept) and, per image, its :func:`query_ties`, read
    from the model's trace (``module.record_intermediates()``, one traced forward per batch of the reference).
    The ties are None for a model whose trace carries no ``token_scores``."""
    module = reference.module
    record = getattr(module, "record_intermediates", None)
    if record is None:
        return reference.predict(images, conf=-1.0), None
    detections: list[Any] = []
    ties: list[int] | None = []
    was_training = module.training
    module.eval()
    try:
        for start in range(0, len(images), reference.batch_size):
            with record() as trace:
                detections += reference.predict(images[start : start + reference.batch_size], conf=-1.0)
            scores = getattr(trace, "token_scores", None)
            if scores is None or ties is None:
                ties = None
                continue
            ties += query_ties(scores, int(module.num_queries), tol)
    finally:
        module.train(was_training)
    return detections, ties


def calibration_error(
    calibrate_numpy, labels: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, eps: float = CALIBRATION_EPS
) -> float:
    """How far the graph's calibrated scores are from the calibrator applied to the graph's own raw scores.

    A calibrator is monotone, so an exact implementation lies in [f(raw - eps), f(raw + eps)]: the distance to that
    interval ignores float32 rounding of the raw score, which a steep isotonic step would otherwise amplify."""
    lo = calibrate_numpy(np.clip(raw.astype(np.float64) - eps, 0.0, 1.0), labels)
    hi = calibrate_numpy(np.clip(raw.astype(np.float64) + eps, 0.0, 1.0), labels)
    c = calibrated.astype(np.float64)
    return float(np.max(np.maximum(lo - c, 0.0) + np.maximum(c - hi, 0.0), initial=0.0))


def verify_parity(
    reference,
    onnx_detector,
    calibrate_numpy=None,
    real_images: Sequence[Any] = (),
    batch_sizes: Sequence[int] = (1, 3),
    precision: str = "fp32",
    seed: int = 0,
) -> ParityReport:
    """Run the same images through ``reference`` (PyTorch ``Detector``) and ``onnx_detector`` and compare.

    The model part is compared on raw (uncalibrated) scores. When the graph embeds a calibrator,
    ``calibrate_numpy(scores, labels) -> scores`` (the calibrator's numpy apply) checks the graph's calibrated
    scores against its raw scores (:func:`calibration_error`), so a steep calibration map cannot turn a 1e-7 raw
    difference into a false alarm, and a wrong calibrator in the graph cannot hide.
    """
    images, kinds = verification_images(real_images, seed=seed)
    sizes = [im.shape[:2] for im in images]
    tol = TOLERANCES[precision]
    ref, ties = predict_with_ties(reference, images, tol["scores"])
    swappable = ties if ties is not None and len(ties) == len(images) else None
    names = [f"{kind} image {i}" for i, kind in enumerate(k for k, n in kinds.items() for _ in range(n))]
    per_batch: dict[str, dict[str, float]] = {}
    example = ""
    for b in batch_sizes:
        outputs = onnx_detector.infer(images, batch_size=b)
        test = [SimpleNamespace(labels=lab, boxes=box, scores=raw) for lab, box, _, raw in outputs]
        found = compare_detections(
            ref, test, sizes, tol["scores"], tol_boxes=tol["boxes"], image_names=names, swappable=swappable
        )
        example = example or (f"batch {b}, " + found.pop("unpaired_example") if found["unpaired"] else "")
        found.pop("unpaired_example", None)
        per_batch[str(b)] = found
        per_batch[str(b)]["max_calibration_error"] = (
            max(calibration_error(calibrate_numpy, lab, raw, cal) for lab, _, cal, raw in outputs)
            if calibrate_numpy is not None
            else 0.0
        )
    keys = (
        "max_abs_diff_scores",
        "max_abs_diff_boxes",
        "max_abs_diff_boxes_px",
        "unpaired",
        "max_calibration_error",
        "query_swaps",
    )
    worst = {key: max(v[key] for v in per_batch.values()) for key in keys}
    agree = {key: min(v[key] for v in per_batch.values()) for key in ("topk_label_agreement", "topk_order_agreement")}
    passed = (
        worst["max_abs_diff_scores"] <= tol["scores"]
        and worst["max_abs_diff_boxes"] <= tol["boxes"]
        and worst["unpaired"] == 0
        and worst["max_calibration_error"] <= tol["scores"]
    )
    return ParityReport(
        batch_sizes=list(batch_sizes),
        num_images=len(images),
        image_kinds=kinds,
        max_abs_diff_scores=worst["max_abs_diff_scores"],
        max_abs_diff_boxes=worst["max_abs_diff_boxes"],
        max_abs_diff_boxes_px=worst["max_abs_diff_boxes_px"],
        top_k=TOP_K_AGREEMENT,
        topk_label_agreement=agree["topk_label_agreement"],
        topk_order_agreement=agree["topk_order_agreement"],
        unpaired=int(worst["unpaired"]),
        tolerance=dict(tol),
        precision=precision,
        passed=bool(passed),
        max_calibration_error=worst["max_calibration_error"],
        per_batch=per_batch,
        unpaired_example=example,
        query_swaps=int(worst["query_swaps"]),
    )


def parity_error(report: ParityReport, path) -> ExportError:
    return ExportError(
        f"exported graph disagrees with PyTorch: {report.summary()}",
        hint="no model file was written; try another opset, leave out fp16/simplify, or report it",
        path=path,
        params=("opset", "fp16", "simplify"),
    )
