"""Boxes drawn on images: the one drawing used by predictions, explanation sheets and augmentation previews."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def palette_rgb(n: int) -> np.ndarray:
    """``(n, 3)`` uint8: one distinct RGB colour per class (evenly spaced hues, vivid and light)."""
    import cv2

    n = max(n, 1)
    hues = (np.arange(n) * (180 / n) + 17).astype(np.uint8) % 180
    hsv = np.stack([hues, np.full(n, 220, np.uint8), np.full(n, 255, np.uint8)], -1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def draw_boxes(
    image_rgb: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    scores: np.ndarray | None = None,
    to_bgr: bool = False,
) -> np.ndarray:
    """A copy of ``image_rgb`` (uint8 HxWx3) with each ``xyxy`` pixel box and its 'class [score]' label, one colour
    per class. Line width and text size follow the image size. ``to_bgr`` returns the copy in OpenCV's BGR order
    (for ``cv2.imwrite`` and video writers). Labels outside ``names`` are drawn with their number."""
    import cv2

    img = np.ascontiguousarray(image_rgb.copy())
    h, w = img.shape[:2]
    thick = max(1, round(min(h, w) / 320))
    scale = max(0.4, min(h, w) / 900)
    colours = palette_rgb(len(names))
    xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    pts = np.round(np.clip(xyxy, 0, [w - 1, h - 1, w - 1, h - 1])).astype(int)
    labels = np.asarray(labels).reshape(-1).astype(int)
    texts = [names[lab] if 0 <= lab < len(names) else str(lab) for lab in labels.tolist()]
    if scores is not None:
        texts = [f"{t} {s:.2f}" for t, s in zip(texts, np.asarray(scores).reshape(-1).tolist())]
    for (x1, y1, x2, y2), lab, text in zip(pts.tolist(), labels.tolist(), texts):
        colour = tuple(int(c) for c in colours[lab % len(colours)])
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, thick, cv2.LINE_AA)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(img, (x1, ty - th - base), (x1 + tw + 2, ty + 1), colour, -1)
        cv2.putText(img, text, (x1 + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if to_bgr else img
