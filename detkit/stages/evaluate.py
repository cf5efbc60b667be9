"""``detkit eval`` as a library function: detections (from a model or a predictions file) -> eval dir.

The eval dir (``runs/eval/<name>/``, name auto-incremented) is assembled in a temporary folder and renamed
into place only when complete::

    predictions.json   COCO results, original category ids
    metrics.json       COCO metrics, per-class AP, confusion matrix, provenance
    robustness.json    with robustness=True (COCO-O domains and/or COCO-C corruptions)
    calibration.json   with calibration=True (D-ECE, LaECE, ... with their matching settings)
    report.md          what a person reads first
    plots/             PR curves, confusion matrix, robustness and reliability figures
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detkit import __version__
from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, read_coco
from detkit.data.dataset import DatasetSpec, load_dataset
from detkit.errors import DetkitError
from detkit.evaluation.calibration_metrics import calibration_report, summary_values
from detkit.evaluation.coco_metrics import evaluate_coco, metrics_for_json
from detkit.evaluation.detections import DetectionTable
from detkit.evaluation.inference import predict_split
from detkit.evaluation.plots import (
    CONFUSION_IOU,
    CONFUSION_SCORE,
    confusion_matrix,
    plot_confusion_matrix,
    plot_pr_overall,
    plot_pr_per_class,
)
from detkit.evaluation.predictions import read_predictions, write_predictions
from detkit.evaluation.report import calibration_section, write_report
from detkit.slicing import DEFAULT_OVERLAP, SlicingError, check_slicing, check_split_fits, sliced
from detkit.utils.atomic import atomic_dir, atomic_write_json
from detkit.utils.run_dirs import next_run_dir

DEFAULT_OUT = Path("runs") / "eval"


@dataclass
class EvalResult:
    """What :func:`evaluate` produced. ``metrics`` keeps the numpy arrays (PR curves); ``metrics.json`` does not."""

    dir: Path
    metrics: dict[str, Any]
    dets: DetectionTable
    robustness: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def files(self) -> dict[str, Path]:
        names = ["predictions.json", "metrics.json", "report.md", "robustness.json", "calibration.json", "plots"]
        return {n: self.dir / n for n in names if (self.dir / n).exists()}

    def summary(self) -> dict[str, Any]:
        """Headline numbers and artifact paths (what the CLI prints with ``--json``)."""
        keys = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
        out: dict[str, Any] = {"eval_dir": str(self.dir), **{k: self.metrics.get(k) for k in keys}}
        out["num_images"] = self.metrics["num_images"]
        out["num_detections"] = self.metrics["num_detections"]
        out["files"] = {k: str(v) for k, v in self.files.items()}
        if self.robustness is not None:
            o, c = self.robustness.get("coco_o") or {}, self.robustness.get("coco_c") or {}
            out["robustness"] = {
                "coco_o": {k: o.get(k) for k in ("mAP_O", "relative_drop", "effective_robustness")} if o else None,
                "coco_c": {k: c.get(k) for k in ("mPC", "rPC")} if c else None,
            }
        if self.calibration is not None:
            out["calibration"] = summary_values(self.calibration)
        out["warnings"] = self.warnings
        return out


def _dataset(dataset: str | Path | DatasetSpec) -> DatasetSpec:
    return dataset if isinstance(dataset, DatasetSpec) else load_dataset(dataset)


def _detector(model: Any, device: str | None, spec: DatasetSpec, weights: Any = None, backend: str | None = None):
    """Any model source (``detkit.inference.open_detector``); weights without a class map take the dataset's."""
    from detkit.inference import open_detector

    return open_detector(model, weights=weights, device=device, class_map=spec, backend=backend)


def _describe_model(model: Any, predictions: str | Path | None) -> str:
    if predictions is not None:
        return f"predictions file {Path(predictions).resolve()}"
    if isinstance(model, (str, Path)):
        return str(Path(model).resolve()) if Path(model).exists() else str(model)
    text = repr(model)
    return text if len(text) <= 200 and "\n" not in text else type(model).__name__


def detections_for(
    detector: Any,
    spec: DatasetSpec,
    split: str,
    gt: CocoData,
    predictions: str | Path | None = None,
    batch_size: int = 8,
) -> DetectionTable:
    """Detections of ``split``: read from ``predictions`` or produced by running ``detector`` over the split."""
    if predictions is not None:
        return read_predictions(predictions, gt, spec.class_map)
    detector_map = getattr(detector, "class_map", None)
    if isinstance(detector_map, ClassMap):
        detector_map.check_same(
            spec.class_map,
            "the model",
            f"dataset {spec.path}",
            hint="evaluate on a dataset with the classes the model was trained on",
        )
    return predict_split(detector, spec.split(split), batch_size=batch_size)


def load_calibrator_for(calibrator: Any, class_map: ClassMap) -> Any:
    """A calibrator object from a ``calibrator.json`` path (checked against ``class_map``) or as given."""
    from detkit.calibration import load_calibrator

    return load_calibrator(calibrator, class_map) if isinstance(calibrator, (str, Path)) else calibrator


def apply_calibrator(calibrator: Any, dets: DetectionTable, class_map: ClassMap) -> DetectionTable:
    """Replace the scores by calibrated ones (``calibrator`` is a calibrator.json path or a loaded calibrator)."""
    from detkit.calibration import apply_to_table

    return apply_to_table(load_calibrator_for(calibrator, class_map), dets, class_map)


def evaluate(
    model: Any,
    dataset: str | Path | DatasetSpec,
    split: str = "val",
    predictions: str | Path | None = None,
    robustness: bool = False,
    coco_o: str | Path | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    calibration: bool = False,
    calibrator: Any = None,
    out: str | Path | None = None,
    name: str | None = None,
    batch_size: int = 8,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    weights: str | Path | None = None,
    slice_hw: Sequence[int] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    backend: str | None = None,
) -> EvalResult:
    """Evaluate a model (run dir, checkpoint, ONNX file or detector object) or a predictions file on a split.

    Writes the eval dir described in the module docstring and returns an :class:`EvalResult`. ``robustness``
    runs the COCO-C corruptions of the split (``corruptions``/``severities`` select a subset) and, with
    ``coco_o``, every COCO-O domain found under that root; both need a model. ``calibration`` measures the
    calibration metrics of the scores; ``calibrator`` applies a fitted calibrator to every score first (and then
    ``calibration.json`` and, with ``robustness``, every domain and corruption also give the raw vs calibrated
    D-ECE and LaECE_0, the calibrator applied unchanged under shift).
    ``slice_hw`` (tile height, width) runs the model with sliced inference (tiles overlapping by ``overlap``,
    :mod:`detkit.slicing`), also on the robustness images; every image of the split must be at least one tile large.
    ``backend`` (onnxruntime or openvino) runs an exported ``.onnx`` model in that runtime (default onnxruntime).
    """
    spec = _dataset(dataset)
    split_spec = spec.split(split)
    gt = read_coco(split_spec.annotations)
    class_map = spec.class_map
    warnings: list[str] = []

    if robustness and model is None:
        raise DetkitError(
            "robustness needs a model: it runs the model on corrupted images and COCO-O domains",
            hint="leave robustness off to evaluate a predictions file alone",
            params="robustness",
        )
    if not robustness and (coco_o is not None or corruptions or severities):
        raise DetkitError(
            "coco_o, corruptions and severities only apply with robustness",
            hint="turn robustness on",
            params=("robustness",),
        )
    if predictions is not None and model is not None:
        raise DetkitError(
            "give either a model or predictions, not both",
            hint="predictions evaluates a file of detections without a model",
            params="predictions",
        )
    if predictions is None and model is None:
        raise DetkitError(
            "nothing to evaluate: give a model (run dir, checkpoint, ONNX file) or a predictions file",
            params="predictions",
        )
    if backend is not None and model is None:
        raise DetkitError(
            "backend applies to running an exported model, not to a predictions file",
            hint="drop the backend, or evaluate the .onnx file",
            params="backend",
        )
    if slice_hw is not None:
        if model is None:
            raise SlicingError("slice_hw applies to running a model, not to a predictions file", "slice_hw")
        slice_hw, overlap = check_slicing(slice_hw, overlap)
        check_split_fits(slice_hw, gt.images, split_spec.annotations)
    if robustness:  # fail on a bad selection or COCO-O root before any inference
        from detkit.evaluation.robustness import (
            find_domains,
            resolve_corruptions,
            resolve_severities,
            robustness_markdown,
            run_robustness,
        )

        if coco_o is not None:
            find_domains(coco_o)
        resolve_corruptions(corruptions)
        resolve_severities(severities)
    cal = load_calibrator_for(calibrator, class_map) if calibrator is not None else None
    target = next_run_dir(out if out is not None else DEFAULT_OUT, name or "eval")

    detector = None
    if model is not None:
        detector = sliced(_detector(model, device, spec, weights, backend), slice_hw, overlap)
    warnings += _calibrator_warnings(detector, cal)
    dets = detections_for(detector, spec, split, gt, predictions, batch_size)
    if len(dets) == 0:
        warnings.append("there are no detections: every AP and AR is 0")
    raw_dets = dets
    if cal is not None:
        dets = apply_calibrator(cal, dets, class_map)
    # evaluate exactly what predictions.json holds (boxes rounded to 1e-4 px),
    # so re-evaluating it reproduces metrics.json
    dets = DetectionTable(dets.image_ids, dets.category_ids, np.round(dets.boxes, 4), dets.scores)

    metrics = evaluate_coco(gt, dets, class_map)
    cm = confusion_matrix(dets, gt, class_map)

    calibration_result = calibration_report(dets, gt, class_map) if calibration else None
    if calibration_result is not None and cal is not None:
        from detkit.evaluation.robustness.calibration import SETTINGS, shift_calibration

        calibration_result["raw_vs_calibrated"] = {
            **shift_calibration(raw_dets, gt, class_map, cal),
            "settings": {k: SETTINGS[k] for k in ("d_ece", "la_ece_0")},
        }
    provenance = {
        "model": _describe_model(model, predictions),
        "dataset": str(spec.path),
        "split": split,
        "calibrator": str(calibrator) if calibrator is not None else None,
        **({"slicing": detector.describe()} if slice_hw is not None else {}),
        "detkit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    metrics_json = {
        **provenance,
        "metrics": metrics_for_json(metrics),
        "confusion_matrix": {
            "iou_threshold": CONFUSION_IOU,
            "score_threshold": CONFUSION_SCORE,
            "labels": [*class_map.names, "background"],
            "rows": "true class",
            "columns": "predicted class",
            "counts": cm.tolist(),
        },
        "warnings": warnings,
    }

    robustness_result = None
    with atomic_dir(target) as tmp:
        write_predictions(tmp / "predictions.json", dets)
        atomic_write_json(tmp / "metrics.json", metrics_json)
        plots = tmp / "plots"
        plots.mkdir()
        plot_pr_overall(metrics, plots / "pr_overall.png")
        plot_pr_per_class(metrics, class_map, plots / "pr_per_class.png")
        plot_confusion_matrix(cm, class_map, plots / "confusion_matrix.png")
        gallery_lines = _failure_gallery_lines(detector, dets, gt, split_spec, class_map, plots)
        if robustness:
            robustness_result = run_robustness(
                detector,
                metrics["AP"],
                spec,
                coco_o_root=coco_o,
                corruptions=corruptions,
                severities=severities,
                cache_dir=cache_dir,
                out_dir=tmp,
                batch_size=batch_size,
                split=split,
                calibration=calibration,
                calibrator=cal,
                clean_dets=raw_dets if calibration else None,
            )
            atomic_write_json(tmp / "robustness.json", robustness_result)
        calibration_lines = None
        if calibration_result is not None:
            from detkit.evaluation.reliability import save_reliability_diagrams

            atomic_write_json(tmp / "calibration.json", calibration_result)
            diagrams = save_reliability_diagrams(calibration_result, plots)
            calibration_lines = calibration_section(
                calibration_result, [p.relative_to(tmp).as_posix() for p in diagrams]
            )
        robustness_lines = (
            robustness_markdown(robustness_result).splitlines() if robustness_result is not None else None
        )
        write_report(
            tmp / "report.md",
            provenance,
            metrics,
            cm,
            class_map,
            robustness_lines,
            calibration_lines,
            warnings,
            gallery_lines=gallery_lines,
        )
    return EvalResult(target, metrics, dets, robustness_result, calibration_result, warnings)


def _calibrator_warnings(detector: Any, cal: Any) -> list[str]:
    """Refuse calibrating twice; say when the scores are not the whole model's (legacy calibrator, graph that drops)."""
    embedded = getattr(detector, "calibrator", None)
    if cal is not None and embedded is not None:
        raise DetkitError(
            "the ONNX model already embeds a calibrator; calibrator would calibrate twice",
            hint="leave calibrator out (the embedded one is applied), or evaluate the checkpoint",
            params="calibrator",
        )
    out = []
    from detkit.calibration.io import LEGACY_NOTE

    for c in (cal, embedded):
        if c is not None and getattr(c, "format_version", 2) < 2 and c.method == "isotonic":
            out.append(LEGACY_NOTE)
    op = (getattr(detector, "metadata", None) or {}).get("operating_point") or {}
    if op.get("applied_in_graph"):
        out.append(
            "this ONNX model drops detections outside its calibrator's per-class operating point inside the "
            "graph (exported with drop_below_threshold): AP and every metric cover the kept detections only, "
            "so AP is lower than the model's; export without it to evaluate the whole model"
        )
    return out


def _failure_gallery_lines(
    detector: Any, dets: DetectionTable, gt: CocoData, split_spec: Any, class_map: ClassMap, plots: Path
) -> list[str]:
    """Worst false positives and missed objects as crops with their explanation maps (detkit.explain.gallery)."""
    from detkit.evaluation.report import failure_gallery_section
    from detkit.explain.gallery import failure_gallery

    gallery = failure_gallery(
        detector, dets, gt, split_spec.images, class_map, plots, annotations_source=split_spec.annotations
    )
    return failure_gallery_section(gallery)
