"""ONNX export (``export_onnx``) and its parity verification; ``OnnxDetector`` is re-exported from the inference layer.

Imports are lazy so that ``import detkit.export`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExportResult", "OnnxDetector", "export_onnx", "read_model_metadata"]


def __getattr__(name: str) -> Any:
    if name in ("export_onnx", "ExportResult"):
        from detkit.export import onnx_export

        return getattr(onnx_export, name)
    if name in ("OnnxDetector", "read_model_metadata"):
        from detkit.inference import onnx_detector

        return getattr(onnx_detector, name)
    raise AttributeError(name)
