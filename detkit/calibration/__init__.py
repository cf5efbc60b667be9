"""Post-hoc confidence calibration: fit (Platt, isotonic, temperature), apply (torch/numpy/ONNX, one
implementation), per-class operating thresholds and ``calibrator.json`` I/O."""

from detkit.calibration.apply import CalibrationModule, apply_to_table, calibrate_scores
from detkit.calibration.calibrators import Calibrator, fit_calibrator
from detkit.calibration.fit import CalibrationResult, evaluate_calibrator, fit_on_detections
from detkit.calibration.io import load_calibrator, save_calibrator

__all__ = [
    "CalibrationModule",
    "CalibrationResult",
    "Calibrator",
    "apply_to_table",
    "calibrate_scores",
    "evaluate_calibrator",
    "fit_calibrator",
    "fit_on_detections",
    "load_calibrator",
    "save_calibrator",
]
