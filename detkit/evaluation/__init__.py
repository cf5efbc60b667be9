"""Evaluation: COCO metrics, matching, calibration metrics, robustness suites and reports."""
