"""The one pre-processing: read RGB uint8, stretch-resize with OpenCV INTER_LINEAR, batch as uint8 ``[B,3,H,W]``.

No letterbox and no mean/std normalisation (RT-DETR uses neither); the model divides by 255 itself, so the same
uint8 tensor feeds PyTorch and the exported graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from detkit.errors import DetkitError


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 HWC RGB (EXIF orientation applied, grey/alpha converted to 3 channels)."""
    path = Path(path)
    if not path.is_file():
        raise DetkitError("image not found", path=path)
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise DetkitError("cannot decode image (not an image file, or truncated)", path=path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _check_array(img: np.ndarray, where: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        desc = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise DetkitError(f"{where}: expected a uint8 HxWx3 RGB array, got {desc}")
    return img


def resize_image(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Stretch to ``(H, W)`` with bilinear interpolation (OpenCV INTER_LINEAR)."""
    h, w = size_hw
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def to_batch(images: Sequence[np.ndarray], size_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 HWC RGB arrays → ``(uint8 tensor [B,3,H,W], orig_sizes int64 [B,2] as (w, h))``."""
    if len(images) == 0:
        raise DetkitError("no images to batch")
    resized, sizes = [], []
    for i, img in enumerate(images):
        img = _check_array(img, f"image {i}")
        sizes.append((img.shape[1], img.shape[0]))
        resized.append(resize_image(img, size_hw))
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(resized).transpose(0, 3, 1, 2)))
    return batch, torch.tensor(sizes, dtype=torch.int64)


def as_image(item: str | Path | np.ndarray, index: int = 0) -> np.ndarray:
    """A path or an array → uint8 HWC RGB array."""
    if isinstance(item, (str, Path)):
        return load_image(item)
    return _check_array(item, f"image {index}")
