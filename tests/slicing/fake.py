"""A fake detector with a resolution limit, and images of coloured squares it detects exactly.

``BlobDetector`` finds the connected blobs of pure red (label 0) and pure green (label 1) pixels of each image it
is given and returns their exact boxes, like a detector whose input is ``imgsz``: a blob narrower than
``min_px`` pixels *after* resizing the image to ``imgsz`` is invisible to it. So on a large image small blobs are
missed, while on tiles (resized less) they are found, which is what slicing is for.
"""

from __future__ import annotations

import cv2
import numpy as np

from detkit.api import Detections
from detkit.data.classmap import ClassMap
from detkit.evaluation.detections import DetectionTable

COLOURS = np.array([[255, 0, 0], [0, 255, 0]], dtype=np.uint8)


class BlobDetector:
    def __init__(self, imgsz: int = 64, min_px: float = 4.0):
        self.class_map = ClassMap.from_names(["red", "green"])
        self.imgsz = (imgsz, imgsz)
        self.min_px = min_px
        self.calls: list[tuple[int, int]] = []  # (h, w) of every image it was given

    def predict(self, images, conf: float = 0.0):
        out = []
        for img in images:
            self.calls.append(img.shape[:2])
            scale = min(self.imgsz[0] / img.shape[0], self.imgsz[1] / img.shape[1])
            boxes, labels = [], []
            for label, colour in enumerate(COLOURS):
                mask = np.all(img == colour, axis=-1).astype(np.uint8)
                _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
                st = stats[1:]
                big = np.minimum(st[:, 2], st[:, 3]) * scale >= self.min_px
                st = st[big]
                boxes.append(np.stack([st[:, 0], st[:, 1], st[:, 0] + st[:, 2], st[:, 1] + st[:, 3]], 1).reshape(-1, 4))
                labels.append(np.full(len(st), label))
            b = np.concatenate(boxes).astype(np.float32)
            lab = np.concatenate(labels).astype(np.int64)
            s = np.clip(0.5 + (b[:, 2] - b[:, 0]) / 200.0, 0, 0.99).astype(np.float32)  # bigger = surer
            keep = s >= conf
            out.append(Detections(b[keep], s[keep], lab[keep], self.class_map.labels_to_category_ids(lab[keep])))
        return out

    def predict_table(self, images, image_ids, conf: float = 0.0) -> DetectionTable:
        return DetectionTable.concat(
            DetectionTable.from_xyxy(int(i), d.boxes, d.scores, d.category_ids)
            for i, d in zip(image_ids, self.predict(images, conf))
        )


def squares_image(hw=(256, 256), seed: int = 0, n: int = 12, sizes=(6, 14), fixed=()):
    """An image of non-touching red/green squares on grey (``fixed`` (x, y, size, label) ones first, then random
    ones up to ``n``), and their xyxy boxes and labels."""
    rng = np.random.default_rng(seed)
    img = np.full((*hw, 3), 128, np.uint8)
    taken = np.zeros(hw, bool)
    boxes, labels = [], []
    for x, y, s, lab in fixed:
        taken[y : y + s, x : x + s] = True
        img[y : y + s, x : x + s] = COLOURS[lab]
        boxes.append([x, y, x + s, y + s])
        labels.append(lab)
    while len(boxes) < n:
        s = int(rng.integers(sizes[0], sizes[1] + 1))
        x, y = int(rng.integers(0, hw[1] - s)), int(rng.integers(0, hw[0] - s))
        if taken[max(y - 2, 0) : y + s + 2, max(x - 2, 0) : x + s + 2].any():
            continue
        taken[y : y + s, x : x + s] = True
        lab = int(rng.integers(2))
        img[y : y + s, x : x + s] = COLOURS[lab]
        boxes.append([x, y, x + s, y + s])
        labels.append(lab)
    return img, np.asarray(boxes, np.float32), np.asarray(labels, np.int64)
