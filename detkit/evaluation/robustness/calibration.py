"""Calibration under distribution shift: D-ECE and LaECE_0 of the raw and the calibrated scores on one image set.

The calibrator is the one fitted on the clean calibration split, applied unchanged (with its operating point)
to every COCO-O domain and COCO-C corruption, as the calibration literature prescribes for shifted test sets.

- D-ECE: every detection, the protocol threshold score >= 0.3 on the scores measured (raw or calibrated),
  10 bins, TP at IoU 0.5, classes pooled;
- LaECE_0: 25 bins, IoU targets at IoU 0, class mean, over the detections at the calibrator's operating point
  (raw >= pre-threshold and calibrated >= threshold of the class), the same detections for raw and calibrated
  scores; without a calibrator over every detection.

Values are fractions in [0, 1]; the report shows percent.
"""

from __future__ import annotations

from typing import Any

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData
from detkit.evaluation.calibration_metrics import D_ECE_SCORE_THRESHOLD, d_ece, la_ece
from detkit.evaluation.detections import DetectionTable

METRICS = ("d_ece", "la_ece_0")
SETTINGS = {
    "d_ece": "D-ECE: all detections with score >= 0.3 (raw or calibrated), 10 bins, TP at IoU 0.5, classes pooled",
    "la_ece_0": "LaECE_0: 25 bins, IoU targets at IoU 0, class mean, detections at the calibrator's operating point "
    "(the same detections raw and calibrated; all detections without a calibrator)",
    "calibrator": "fitted on the clean calibration split, applied unchanged to every domain and corruption",
}


def _errors(
    dets: DetectionTable, op: DetectionTable, gt: CocoData, class_map: ClassMap, max_dets: int
) -> dict[str, float | None]:
    return {
        "d_ece": d_ece(dets, gt, 0.5, 10, D_ECE_SCORE_THRESHOLD, max_dets=max_dets, class_map=class_map)["value"],
        "la_ece_0": la_ece(op, gt, 0.0, 25, None, "kuzucu", max_dets, class_map)["value"],
    }


def shift_calibration(
    dets: DetectionTable, gt: CocoData, class_map: ClassMap, calibrator: Any = None, max_dets: int = 100
) -> dict[str, Any]:
    """``{"raw": {d_ece, la_ece_0}, "calibrated": {...} | None, "num_detections", "num_operating"}`` of raw ``dets``.

    ``calibrator`` is a :class:`detkit.calibration.Calibrator` (anything with its ``operate(dets, class_map)``).
    """
    if calibrator is None:
        return {
            "raw": _errors(dets, dets, gt, class_map, max_dets),
            "calibrated": None,
            "num_detections": int(len(dets)),
            "num_operating": int(len(dets)),
        }
    calibrated, keep = calibrator.operate(dets, class_map)
    return {
        "raw": _errors(dets, dets.subset(keep), gt, class_map, max_dets),
        "calibrated": _errors(calibrated, calibrated.subset(keep), gt, class_map, max_dets),
        "num_detections": int(len(dets)),
        "num_operating": int(keep.sum()),
    }


def calibration_rows(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(set name, shift_calibration entry) for the clean split, every COCO-O domain and COCO-C cell, in order."""
    rows: list[tuple[str, dict[str, Any]]] = []
    cal = result.get("calibration") or {}
    if cal.get("clean"):
        rows.append(("clean", cal["clean"]))
    for name, d in ((result.get("coco_o") or {}).get("domains") or {}).items():
        if d.get("calibration"):
            rows.append((name, d["calibration"]))
    c = result.get("coco_c") or {}
    for corruption, per in (c.get("calibration") or {}).items():
        for severity, entry in per.items():
            rows.append((f"{corruption} s{severity}", entry))
    return rows
