"""``calibrate()``: the library entry point behind ``detkit calibrate``.

It opens the model once (any source, :func:`detkit.inference.open_detector`), gets the detections of the fit
split and of a held-out split (or takes them from tables / COCO results files), fits the calibrator on the
first (:func:`detkit.calibration.fit.fit_on_detections`) and measures it on the second
(:func:`detkit.calibration.fit.evaluate_calibrator`). :func:`write_outputs` writes ``calibrator.json`` and its
before/after report and reliability diagrams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detkit.calibration.fit import (
    SUMMARY_KEYS,
    CalibrationResult,
    evaluate_calibrator,
    fit_on_detections,
    resolve_eval_split,
)
from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, read_coco
from detkit.data.dataset import DatasetSpec, load_dataset
from detkit.errors import DetkitError
from detkit.evaluation.calibration_metrics import summary_values
from detkit.evaluation.detections import DetectionTable


def _dataset(dataset: DatasetSpec | str | Path) -> DatasetSpec:
    return dataset if isinstance(dataset, DatasetSpec) else load_dataset(dataset)


def _load_model(source: Any, device: str | None, ds: DatasetSpec, weights: Any = None) -> Any:
    """Any model source (``detkit.inference.open_detector``); weights without a class map take the dataset's."""
    from detkit.inference import open_detector

    return open_detector(source, weights=weights, device=device, class_map=ds)


def _load_detections(
    source: Any, ds: DatasetSpec, split: str, gt: CocoData, batch_size: int, what: str
) -> tuple[DetectionTable, str]:
    """Detections of ``split`` from a table, a predictions file or a model (run dir, checkpoint, detector)."""
    from detkit.evaluation.predictions import read_predictions

    if isinstance(source, DetectionTable):
        return source, f"{what}: detections given in Python"
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() == ".json":
        return read_predictions(source, gt, ds.class_map), f"{what}: predictions file {source}"
    from detkit.evaluation.inference import predict_split

    detector = source
    cm = getattr(detector, "class_map", None)
    if isinstance(cm, ClassMap):
        cm.check_same(
            ds.class_map, "the model", f"dataset {ds.path}", hint="calibrate a model trained on this dataset's classes"
        )
    label = getattr(detector, "source", None) or type(detector).__name__
    return predict_split(detector, ds.split(split), batch_size=batch_size), f"{what}: model {label}"


def calibrate(
    source: Any = None,
    dataset: DatasetSpec | str | Path | None = None,
    split: str = "calib",
    method: str = "isotonic",
    classwise: bool = True,
    target: str = "iou",
    iou: float | None = None,
    eval_split: str | None = None,
    force: bool = False,
    predictions: DetectionTable | str | Path | None = None,
    eval_predictions: DetectionTable | str | Path | None = None,
    pre_threshold: str | float | None = "auto",
    threshold: str = "lrp",
    min_samples: int = 10,
    max_dets: int = 100,
    batch_size: int = 8,
    device: str | None = None,
    weights: str | Path | None = None,
) -> CalibrationResult:
    """Fit a calibrator on ``split`` and evaluate it before/after on a held-out split.

    ``source`` is a model (run dir, checkpoint, or any object with ``predict_table``) or a
    :class:`DetectionTable` of the fit split. ``predictions`` / ``eval_predictions`` (tables or COCO-results
    files) replace running a model on the fit / evaluation split.
    """
    if dataset is None:
        raise DetkitError("calibration needs a dataset", hint="pass dataset (a dataset.yaml)", params="dataset")
    ds = _dataset(dataset)
    if not ds.has_split(split):
        raise DetkitError(
            f"dataset has no split '{split}' to fit the calibrator on (it has: {', '.join(ds.splits)})",
            hint="pick one with split (never the training split), or add a calib split with `detkit data split`",
            path=ds.path,
            params="split",
        )
    fit_spec = ds.split(split)
    ev_name = resolve_eval_split(ds, split, eval_split, force)
    fit_gt = read_coco(fit_spec.annotations)
    model_label = str(source) if isinstance(source, (str, Path)) else None
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() != ".json":
        source = _load_model(source, device, ds, weights)  # once, for both splits
    fit_source = predictions if predictions is not None else source
    if fit_source is None:
        raise DetkitError(
            "nothing to calibrate: give a model or a predictions file of the fit split",
            hint="pass a model (source) with the dataset, or predictions (a COCO results file)",
            params="predictions",
        )
    fit_dets, fit_from = _load_detections(fit_source, ds, split, fit_gt, batch_size, "fit detections")

    cal = fit_on_detections(
        fit_dets,
        fit_gt,
        ds.class_map,
        method,
        classwise,
        target,
        iou,
        pre_threshold,
        threshold,
        min_samples,
        max_dets,
        split,
    )
    if model_label and fit_source is source:
        fit_from = f"fit detections: model {model_label}"
    cal.fit_info.update({"dataset": str(ds.path), "source": fit_from})
    result = CalibrationResult(cal, split, ev_name)
    if split == "train":
        result.warnings.append(
            "fitting on the training split: a detector is over-confident on the images it was trained on, "
            "so the calibrator will not transfer; use a held-out calib (or val) split"
        )
    guard = cal.fit_info.get("guard") or {}
    if guard.get("identity"):
        result.warnings.append(guard["reason"])
    elif cal.fallback:
        shown = ", ".join(f"{k} ({v})" for k, v in list(cal.fallback.items())[:5])
        result.warnings.append(f"identity calibration for {len(cal.fallback)} class(es): {shown}")

    eval_source = (
        eval_predictions
        if eval_predictions is not None
        else (source if not isinstance(source, DetectionTable) else None)
    )
    if ev_name is None:
        result.warnings.append(
            f"no held-out split to evaluate on (the dataset has no test or val split besides '{split}')"
        )
    elif eval_source is None:
        result.warnings.append(
            "evaluation skipped: no model and no predictions of the evaluation split (eval_predictions)"
        )
        result.eval_split = None
    else:
        ev_gt = read_coco(ds.split(ev_name).annotations)
        ev_dets, ev_from = _load_detections(eval_source, ds, ev_name, ev_gt, batch_size, "eval detections")
        if model_label and eval_source is source:
            ev_from = f"eval detections: model {model_label}"
        before, after, ap_b, ap_a = evaluate_calibrator(cal, ev_dets, ev_gt, ds.class_map, max_dets)
        result.before, result.after, result.ap_before, result.ap_after = before, after, ap_b, ap_a
        if ap_b is not None and ap_a is not None and abs(ap_a - ap_b) > 1e-3:
            result.warnings.append(
                f"AP of the calibrated scores is {100 * ap_a:.2f} vs {100 * ap_b:.2f} raw: the map is strictly "
                "increasing per class, so this can only come from scores so close that they round to the same value"
            )
        cal.evaluation = {
            "split": ev_name,
            "source": ev_from,
            "note": "every detection kept and calibrated; AP and D-ECE (score >= 0.3) over all detections, raw "
            "vs calibrated; LaECE_0, LaACE_0, LRP over the detections at the operating point (raw >= "
            "pre-threshold and calibrated >= threshold), the same detections raw and calibrated; "
            "fractions in [0, 1]",
            "metrics": {
                k: {
                    "name": before["metrics"][k]["name"],
                    "before": summary_values(before)[k],
                    "after": summary_values(after)[k],
                }
                for k in SUMMARY_KEYS
            },
            "AP": {"before": ap_b, "after": ap_a},
            "num_detections": {"before": before["num_detections"], "after": after["num_detections"]},
        }
    return result


def write_outputs(result: CalibrationResult, out: str | Path) -> dict[str, Path]:
    """``calibrator.json`` at ``out``; next to it the before/after reports (``<stem>_evaluation.json``) and
    reliability diagrams (``<stem>_reliability_<metric>.png``) when an evaluation was made."""
    from detkit.calibration.io import save_calibrator
    from detkit.evaluation.reliability import save_before_after
    from detkit.utils.atomic import atomic_write_json

    out = Path(out)
    if out.exists() and out.is_dir():
        out = out / "calibrator.json"
    paths: dict[str, Path] = {"calibrator": save_calibrator(result.calibrator, out)}
    if result.before is not None and result.after is not None:
        paths["evaluation"] = atomic_write_json(
            out.with_name(f"{out.stem}_evaluation.json"),
            {
                "split": result.eval_split,
                "AP": {"before": result.ap_before, "after": result.ap_after},
                "before": result.before,
                "after": result.after,
            },
        )
        for p in save_before_after(result.before, result.after, out.parent, prefix=f"{out.stem}_reliability"):
            paths["reliability D-ECE" if p.stem.endswith("d_ece") else "reliability LaECE_0"] = p
    return paths
