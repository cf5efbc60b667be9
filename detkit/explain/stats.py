"""Numbers that say whether a map points at its detection: peak, mass inside the box, masking drop."""

from __future__ import annotations

from typing import Any

import numpy as np


def box_mask(box: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """bool [H, W]: pixels whose centre lies inside the xyxy box."""
    h, w = hw
    ys = np.arange(h) + 0.5
    xs = np.arange(w) + 0.5
    return ((ys >= box[1]) & (ys <= box[3]))[:, None] & ((xs >= box[0]) & (xs <= box[2]))[None]


def map_stats(maps: np.ndarray, boxes: np.ndarray) -> dict[str, np.ndarray]:
    """Per map: ``peak`` (x, y) pixel centre of the maximum, ``mass_inside`` (share of the map's total inside the
    box; NaN for an all-zero map), ``box_share`` (box area / image area) and ``ratio`` = mass_inside / box_share
    (1 = no better than a uniform map)."""
    k, h, w = maps.shape
    flat = maps.reshape(k, -1)
    arg = flat.argmax(1) if k else np.zeros(0, np.int64)
    peak = np.stack([arg % w + 0.5, arg // w + 0.5], 1).astype(np.float64) if k else np.zeros((0, 2))
    masks = np.stack([box_mask(b, (h, w)) for b in boxes]) if k else np.zeros((0, h, w), bool)
    total = flat.sum(1)
    inside = (maps * masks).reshape(k, -1).sum(1)
    mass = np.divide(inside, total, out=np.full(k, np.nan), where=total > 0)
    share = masks.reshape(k, -1).mean(1)
    ratio = np.divide(mass, share, out=np.full(k, np.nan), where=share > 0)
    return {"peak": peak, "mass_inside": mass, "box_share": share, "ratio": ratio}


def _square(centre: np.ndarray, side: float, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """An axis-aligned square of ``side`` px centred on ``centre`` (x, y), shifted to lie inside the image."""
    h, w = hw
    s = int(max(1, min(round(side), h, w)))
    x0 = int(np.clip(round(centre[0] - s / 2), 0, w - s))
    y0 = int(np.clip(round(centre[1] - s / 2), 0, h - s))
    return x0, y0, x0 + s, y0 + s


def masking_drop(
    detector: Any,
    image: np.ndarray,
    box: np.ndarray,
    label: int,
    score: float,
    peak: np.ndarray,
    rng: np.random.Generator,
    side_fraction: float = 0.5,
    iou: float = 0.5,
) -> tuple[float, float]:
    """Score drops of one detection when a square at the map's peak / at a random place is filled with the image's
    mean colour. The square's side is ``side_fraction`` × sqrt(box area); the score after masking is the best score
    of a same-class detection with IoU >= ``iou`` to the original box (0 when none)."""
    from detkit.explain.drise import pairwise_iou

    h, w = image.shape[:2]
    side = side_fraction * float(np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0)))
    fill = image.reshape(-1, 3).mean(0).round().astype(np.uint8)
    regions = [_square(peak, side, (h, w))]
    s = regions[0][2] - regions[0][0]
    regions.append(_square(np.array([rng.uniform(s / 2, w - s / 2), rng.uniform(s / 2, h - s / 2)]), side, (h, w)))
    masked = []
    for x0, y0, x1, y1 in regions:
        im = image.copy()
        im[y0:y1, x0:x1] = fill
        masked.append(im)
    drops = []
    for d in detector.predict(masked, conf=0.0):
        same = np.asarray(d.labels) == label
        ious = pairwise_iou(box[None].astype(np.float64), np.asarray(d.boxes, np.float64))[0]
        ok = same & (ious >= iou)
        drops.append(score - (float(np.asarray(d.scores)[ok].max()) if ok.any() else 0.0))
    return drops[0], drops[1]


def sanity_check(
    detector: Any, images: list[np.ndarray], method: str, conf: float = 0.3, masks: int = 256, seed: int = 0
) -> dict[str, Any]:
    """The two sanity measurements of a method over images holding one object each, on each image's top detection
    (score >= ``conf``): mass inside the box relative to the box's share of the image (> 1: better than uniform),
    and the mean score drop when the map's peak region vs a random region of the same size is masked
    (:func:`masking_drop`)."""
    from detkit.explain.run import explain_image

    rng = np.random.default_rng(seed)
    ratio, peak_drop, random_drop, scores = [], [], [], []
    for image in images:
        ex = explain_image(detector, image, method, top=1, conf=conf, masks=masks, seed=seed)
        if len(ex.targets) == 0:
            continue
        st = ex.stats
        t = ex.targets
        ratio.append(float(st["ratio"][0]))
        p, r = masking_drop(detector, image, t.boxes[0], int(t.labels[0]), float(t.scores[0]), st["peak"][0], rng)
        peak_drop.append(p)
        random_drop.append(r)
        scores.append(float(t.scores[0]))
    n = len(ratio)

    def mean(v):
        return float(np.nanmean(v)) if n else float("nan")

    return {
        "method": method,
        "detections": n,
        "images": len(images),
        "mean_score": mean(scores),
        "mass_ratio_mean": mean(ratio),
        "mass_ratio_median": float(np.nanmedian(ratio)) if n else float("nan"),
        "share_ratio_at_least_3": float(np.mean(np.asarray(ratio) >= 3)) if n else float("nan"),
        "peak_mask_drop": mean(peak_drop),
        "random_mask_drop": mean(random_drop),
    }
