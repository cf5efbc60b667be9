"""Pictures of explanation maps: the map over the image with the detection's box and label, and contact sheets."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

LEVEL_COLOURS = ((255, 255, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0))  # BGR per feature level


def heat_overlay(image_rgb: np.ndarray, saliency: np.ndarray, strength: float = 0.65) -> np.ndarray:
    """RGB image with the map (scaled to its maximum) blended in as a JET heat map; weak values stay transparent."""
    top = float(saliency.max()) if saliency.size else 0.0
    norm = saliency / top if top > 0 else np.zeros_like(saliency)
    heat = cv2.cvtColor(cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    alpha = (strength * norm)[..., None]
    return (image_rgb * (1 - alpha) + heat * alpha).round().astype(np.uint8)


def draw_points(bgr: np.ndarray, xy: np.ndarray, weight: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Sampling points as circles, radius growing with the attention weight, colour by feature level."""
    h, w = bgr.shape[:2]
    base = max(1.0, min(h, w) / 160)
    top = float(weight.max()) if len(weight) else 1.0
    for (x, y), wt, lv in zip(xy.tolist(), weight.tolist(), level.tolist()):
        if 0 <= x < w and 0 <= y < h:
            r = max(1, round(base * (0.5 + 2.5 * wt / max(top, 1e-9))))
            cv2.circle(bgr, (round(x), round(y)), r, LEVEL_COLOURS[lv % len(LEVEL_COLOURS)], 1, cv2.LINE_AA)
    return bgr


MIN_PICTURE_SIDE = 480  # smaller images are enlarged for drawing, so labels and points stay legible


def detection_picture(
    image_rgb: np.ndarray,
    saliency: np.ndarray,
    box: np.ndarray,
    label: int,
    score: float,
    names: Sequence[str],
    points=None,
) -> np.ndarray:
    """BGR picture: heat map, the detection's box and 'class score', and (for sampling maps) the points.

    Images whose shorter side is below ``MIN_PICTURE_SIDE`` are drawn enlarged (the picture, not the numbers)."""
    from detkit.utils.draw import draw_boxes

    h, w = image_rgb.shape[:2]
    f = max(1.0, MIN_PICTURE_SIDE / min(h, w))
    if f > 1.0:
        size = (round(w * f), round(h * f))
        image_rgb = cv2.resize(image_rgb, size, interpolation=cv2.INTER_NEAREST)
        saliency = cv2.resize(saliency, size, interpolation=cv2.INTER_LINEAR)
    bgr = draw_boxes(
        heat_overlay(image_rgb, saliency), box[None] * f, np.array([label]), names, np.array([score]), to_bgr=True
    )
    if points is not None:
        draw_points(bgr, points.xy * f, points.weight, points.level)
    return bgr


def contact_sheet(
    original_bgr: np.ndarray, pictures: Sequence[np.ndarray], tile: int = 320, cols: int = 3
) -> np.ndarray:
    """The annotated image followed by the detections' pictures, in a grid of ``tile``-px cells (BGR)."""
    cells = [original_bgr, *pictures]
    h, w = original_bgr.shape[:2]
    th, tw = (tile, max(1, round(tile * w / h))) if h >= w else (max(1, round(tile * h / w)), tile)
    cols = min(cols, len(cells))
    rows = -(-len(cells) // cols)
    sheet = np.full((rows * (th + 4) + 4, cols * (tw + 4) + 4, 3), 32, np.uint8)
    for i, c in enumerate(cells):
        r, col = divmod(i, cols)
        y, x = 4 + r * (th + 4), 4 + col * (tw + 4)
        sheet[y : y + th, x : x + tw] = cv2.resize(c, (tw, th), interpolation=cv2.INTER_AREA)
    return sheet


def write_png(path, bgr: np.ndarray) -> None:
    from detkit.utils.atomic import atomic_write_bytes

    ok, data = cv2.imencode(".png", bgr)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise RuntimeError(f"PNG encoding failed for {path}")
    atomic_write_bytes(path, data.tobytes())
