"""Evaluation: COCO metrics, matching, calibration metrics, robustness suites and reports.

The main entry points are importable from here (loaded on first use, so ``import detkit.evaluation`` stays
light): ``evaluate`` (the whole ``detkit eval`` stage), ``evaluate_coco``, ``predict_split``,
``read_predictions`` / ``write_predictions`` and ``DetectionTable``.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DetectionTable": "detkit.evaluation.detections",
    "EvalResult": "detkit.stages.evaluate",
    "evaluate": "detkit.stages.evaluate",
    "evaluate_coco": "detkit.evaluation.coco_metrics",
    "predict_split": "detkit.evaluation.inference",
    "read_predictions": "detkit.evaluation.predictions",
    "write_predictions": "detkit.evaluation.predictions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'detkit.evaluation' has no attribute {name!r}")
