"""What every detector returns and the interface every backend implements (numpy only, no torch import)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from detkit.errors import DetkitError

if TYPE_CHECKING:
    from detkit.data.classmap import ClassMap
    from detkit.evaluation.detections import DetectionTable

ImageLike = str | Path | np.ndarray
DEFAULT_IMGSZ = 640


def size_hw(imgsz: int | Sequence[int]) -> tuple[int, int]:
    """``640`` or ``(480, 640)`` → (H, W), both positive multiples of 32."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(int(v) for v in imgsz)
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise DetkitError(f"image size must be positive multiples of 32, got {h}×{w}")
    return h, w


@dataclass
class Detections:
    """Detections of one image, sorted by descending score."""

    boxes: np.ndarray  # float32 [n, 4] xyxy, pixels of the original image
    scores: np.ndarray  # float32 [n]
    labels: np.ndarray  # int64 [n], model label index (class_map.names[label])
    category_ids: np.ndarray  # int64 [n], the dataset's original category ids

    def __len__(self) -> int:
        return len(self.scores)


@runtime_checkable
class Detector(Protocol):
    """The interface of every detector (PyTorch ``TorchDetector``, onnxruntime ``OnnxDetector``, OpenVINO
    ``OpenVinoDetector``).

    ``backend`` is ``"torch"``, ``"onnxruntime"`` or ``"openvino"``; ``source`` the file the weights came from
    (None when built in memory); images are paths or uint8 HWC RGB arrays; boxes come back as xyxy pixels of the
    original image.
    """

    backend: str
    class_map: ClassMap
    imgsz: tuple[int, int]
    source: Path | None

    def predict(self, images: ImageLike | Sequence[ImageLike], conf: float = 0.0) -> list[Detections]: ...

    def predict_table(
        self, images: Sequence[ImageLike], image_ids: Sequence[int], conf: float = 0.0
    ) -> DetectionTable: ...
