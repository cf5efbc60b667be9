"""The public Python API: :func:`load_model` and :class:`Detector` (the PyTorch detector).

>>> import detkit
>>> det = detkit.load_model("runs/train/exp")            # or a checkpoint, model.onnx, rtdetr_r50vd.pth, ...
>>> dets = det.predict(["a.jpg", "b.jpg"], conf=0.3)      # list of Detections (xyxy pixels, scores, labels, ids)

Both are names of the inference layer (:mod:`detkit.inference`): ``load_model`` is
:func:`detkit.inference.open_detector` with the historical argument order, ``Detector`` is
:class:`detkit.inference.TorchDetector`. The backend-neutral interface is the Protocol
:class:`detkit.inference.Detector`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detkit.data.classmap import ClassMap
from detkit.inference.classes import COCO80_IDS, COCO80_NAMES, coco80_class_map
from detkit.inference.resolve import find_run_checkpoint
from detkit.inference.torch_detector import TorchDetector
from detkit.inference.types import DEFAULT_IMGSZ, Detections, ImageLike
from detkit.inference.types import size_hw as _size_hw
from detkit.utils.device import resolve_device

Detector = TorchDetector

__all__ = [
    "COCO80_IDS",
    "COCO80_NAMES",
    "DEFAULT_IMGSZ",
    "Detections",
    "Detector",
    "ImageLike",
    "_size_hw",
    "coco80_class_map",
    "find_run_checkpoint",
    "load_model",
    "resolve_device",
]


def load_model(
    source: Any,
    weights: str | Path | None = None,
    device: Any = None,
    reinit_head: bool = False,
    class_map: ClassMap | str | Path | None = None,
    imgsz: int | Sequence[int] | None = None,
):
    """A detector from a run dir, a checkpoint, ``recipe:NAME`` (+ ``weights``), ``model.onnx`` or bare official /
    Hugging Face weights (architecture inferred from their shapes). See :func:`detkit.inference.open_detector`."""
    from detkit.inference.resolve import open_detector

    return open_detector(
        source, weights=weights, device=device, reinit_head=reinit_head, class_map=class_map, imgsz=imgsz
    )
