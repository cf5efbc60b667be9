"""The export targets, as a table: one module per target, all sharing the export job (``detkit.export.job``).

A target is a function ``export(model_source, out, **options) -> result`` in its own module; the table names it
(by import path, so listing the targets imports nothing heavy), the file suffix it writes and its default output
name. A new target (e.g. TensorRT) is one more module and one more row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from detkit.export.errors import ExportError


@dataclass(frozen=True)
class ExportTarget:
    name: str
    entry: str  # "module:function" of the target's export function
    suffix: str  # the file it writes
    default_out: str
    summary: str

    def load(self) -> Callable[..., Any]:
        module, _, function = self.entry.partition(":")
        return getattr(import_module(module), function)


TARGETS: dict[str, ExportTarget] = {
    "onnx": ExportTarget(
        "onnx",
        "detkit.export.targets.onnx:export_onnx",
        ".onnx",
        "model.onnx",
        "ONNX graph, fp32 (or fp16 with fp16=True), verified against PyTorch",
    ),
    "int8": ExportTarget(
        "int8",
        "detkit.export.targets.int8:export_int8",
        ".onnx",
        "model_int8.onnx",
        "ONNX graph statically quantized to INT8 by onnxruntime, refused beyond an AP-drop bound",
    ),
}


def export_target(name: str) -> ExportTarget:
    """The row of ``TARGETS`` called ``name``; an unknown name is a one-line error listing the known ones."""
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise ExportError(
            f"unknown export target {name!r}", hint=f"choose one of: {', '.join(TARGETS)}", params="target"
        ) from None


def export_model(model_source: Any, target: str = "onnx", out: str | Path | None = None, **options: Any) -> Any:
    """Export ``model_source`` with the target called ``target`` to ``out`` (default: the target's default name);
    ``options`` are the target function's own (see ``export_onnx`` and ``export_int8``)."""
    row = export_target(target)
    return row.load()(model_source, Path(out) if out is not None else Path(row.default_out), **options)
