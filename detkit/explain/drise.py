"""D-RISE: model-agnostic saliency from random masks (works on anything with ``predict``, ONNX included).

The image (at the model's input size) is multiplied by ``masks`` random soft masks: a coarse ``cells`` × ``cells``
grid of cells kept with probability ``keep``, upsampled bilinearly to one cell more than the image and cropped at a
random offset, so cell edges fall anywhere. Hidden pixels take the image's mean colour. For every masked image and
target detection the similarity is the best ``IoU × score`` among the masked run's detections of the target's
class (DETR scores are per-class probabilities, so the class term of D-RISE reduces to the score itself).
The saliency of a pixel is the mean similarity of the masks that kept it minus the mean similarity over all
masks, clipped at 0: how much showing that pixel raises the detection above its average under masking.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detkit.explain.targets import Targets

MIN_SCORE = 0.01  # detections below this in a masked run count as absent


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[len(a), len(b)]`` of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def similarity(targets: Targets, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per target, the best ``IoU × score`` among detections of its class (0 when there is none)."""
    if len(boxes) == 0:
        return np.zeros(len(targets))
    s = pairwise_iou(targets.boxes.astype(np.float64), boxes.astype(np.float64)) * scores[None]
    s = np.where(targets.labels[:, None] == labels[None], s, 0.0)
    return s.max(1)


def random_masks(rng: np.random.Generator, n: int, size_hw: tuple[int, int], cells: int, keep: float) -> np.ndarray:
    """``n`` soft masks ``[n, H, W]`` in [0, 1] (see the module docstring)."""
    import cv2

    h, w = size_hw
    ch, cw = -(-h // cells), -(-w // cells)
    grids = (rng.random((n, cells, cells)) < keep).astype(np.float32)
    shifts = rng.integers(0, [ch, cw], size=(n, 2))
    out = np.empty((n, h, w), np.float32)
    for i in range(n):
        up = cv2.resize(grids[i], ((cells + 1) * cw, (cells + 1) * ch), interpolation=cv2.INTER_LINEAR)
        out[i] = up[shifts[i, 0] : shifts[i, 0] + h, shifts[i, 1] : shifts[i, 1] + w]
    return out


def drise_maps(
    detector: Any,
    image: np.ndarray,
    targets: Targets,
    masks: int = 256,
    cells: int = 16,
    keep: float = 0.5,
    seed: int = 0,
    batch_size: int = 8,
) -> np.ndarray:
    """Maps ``[k, H, W]`` (float32, original image size) for ``targets`` (boxes in original pixels)."""
    import cv2

    from detkit.data.images import resize_image

    h, w = image.shape[:2]
    k = len(targets)
    if k == 0:
        return np.zeros((0, h, w), np.float32)
    mh, mw = detector.imgsz
    small = resize_image(image, (mh, mw)).astype(np.float32)
    fill = small.reshape(-1, 3).mean(0)
    scale = np.array([mw / w, mh / h, mw / w, mh / h], np.float32)
    in_model = Targets(targets.boxes * scale, targets.scores, targets.labels)
    rng = np.random.default_rng(seed)
    weighted = np.zeros((k, mh, mw), np.float64)
    kept = np.zeros((mh, mw), np.float64)
    total = np.zeros(k, np.float64)
    for start in range(0, masks, batch_size):
        m = random_masks(rng, min(batch_size, masks - start), (mh, mw), cells, keep)
        masked = (small[None] * m[..., None] + fill * (1.0 - m[..., None])).round().astype(np.uint8)
        dets = detector.predict(list(masked), conf=MIN_SCORE)
        s = np.stack(
            [similarity(in_model, np.asarray(d.boxes), np.asarray(d.scores), np.asarray(d.labels)) for d in dets]
        )  # [n, k]
        weighted += np.einsum("nk,nhw->khw", s, m)
        kept += m.sum(0)
        total += s.sum(0)
    sal = weighted / np.maximum(kept, 1e-6)[None] - (total / masks)[:, None, None]
    sal = np.maximum(sal, 0.0).astype(np.float32)
    return np.stack([cv2.resize(s_, (w, h), interpolation=cv2.INTER_LINEAR) for s_ in sal])
