"""The one inference layer: model sources → detectors with one interface, whatever the backend.

- :class:`Detector` (a Protocol): ``backend``, ``class_map``, ``imgsz``, ``source``, ``predict(images, conf)``,
  ``predict_table(images, image_ids, conf)``; implemented by :class:`TorchDetector` (PyTorch) and
  :class:`OnnxDetector` (onnxruntime) and :class:`OpenVinoDetector` (OpenVINO, optional extra), the last two
  sharing :class:`ExportedDetector`.
- :func:`open_detector`: run dir, checkpoint, ``recipe:NAME`` (+ weights), ``model.onnx`` or bare official /
  Hugging Face weights → a Detector. Every command and ``detkit.load_model`` go through it.

Layering: this package imports ``models``, ``data``, ``config``, ``evaluation.detections`` and the calibrator
reader; ``export`` imports it, never the reverse. Names load on first use, so importing it is cheap.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Detections": "detkit.inference.types",
    "Detector": "detkit.inference.types",
    "ImageLike": "detkit.inference.types",
    "DEFAULT_IMGSZ": "detkit.inference.types",
    "size_hw": "detkit.inference.types",
    "TorchDetector": "detkit.inference.torch_detector",
    "resolve_device": "detkit.inference.torch_detector",
    "OnnxDetector": "detkit.inference.onnx_detector",
    "read_model_metadata": "detkit.inference.onnx_detector",
    "ExportedDetector": "detkit.inference.exported",
    "OpenVinoDetector": "detkit.inference.openvino_detector",
    "open_detector": "detkit.inference.resolve",
    "find_run_checkpoint": "detkit.inference.resolve",
    "coco80_class_map": "detkit.inference.classes",
    "default_class_map": "detkit.inference.classes",
    "read_class_map": "detkit.inference.classes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'detkit.inference' has no attribute {name!r}")
