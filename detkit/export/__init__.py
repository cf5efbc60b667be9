"""Export: one job shared by every target (``job``), one module per target (``targets``: ONNX fp32/fp16, INT8)
and the tie-robust parity check (``verify``); ``OnnxDetector`` is re-exported from the inference layer.

Imports are lazy so that ``import detkit.export`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ExportResult": "detkit.export.targets.onnx",
    "export_onnx": "detkit.export.targets.onnx",
    "export_int8": "detkit.export.targets.int8",
    "TARGETS": "detkit.export.targets",
    "ExportTarget": "detkit.export.targets",
    "export_model": "detkit.export.targets",
    "export_target": "detkit.export.targets",
    "ExportJob": "detkit.export.job",
    "ExportError": "detkit.export.errors",
    "OnnxDetector": "detkit.inference.onnx_detector",
    "read_model_metadata": "detkit.inference.onnx_detector",
}

__all__ = [
    "TARGETS",
    "ExportError",
    "ExportJob",
    "ExportResult",
    "ExportTarget",
    "OnnxDetector",
    "export_int8",
    "export_model",
    "export_onnx",
    "export_target",
    "read_model_metadata",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
