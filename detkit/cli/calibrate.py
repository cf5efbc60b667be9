"""``detkit calibrate``: fit a post-hoc calibrator on one split, report before/after on another."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.ui import UI
from detkit.errors import DetkitError

METHOD_HELP = (
    "platt (sigmoid of a*logit+b), isotonic (strictly increasing piecewise-linear) or temperature "
    "(baseline; identity unless it lowers the fit split's error). "
    "All keep the order of a class's detections."
)


def _default_out(model: str | None) -> Path:
    if model and Path(model).is_dir():
        return Path(model) / "calibrator.json"
    return Path("runs") / "calibrate" / "calibrator.json"


def calibrate_command(
    model: str = typer.Argument(
        None,
        help=(
            "Run dir, checkpoint (.pt), model.onnx, bare official RT-DETR .pth / Hugging Face .safetensors "
            "(classes from --data), or recipe:NAME with --weights. Leave out with --predictions."
        ),
        show_default=False,
    ),
    weights: Path = typer.Option(
        None,
        "--weights",
        help=(
            "Weights for a recipe:NAME / recipe.yaml MODEL: detkit checkpoint, official RT-DETR .pth or "
            "Hugging Face .safetensors."
        ),
    ),
    data: Path = typer.Option(..., "--data", help="dataset.yaml (or its folder)."),
    split: str = typer.Option("calib", "--split", help="Split to fit the calibrator (and thresholds) on."),
    method: str = typer.Option("isotonic", "--method", help=METHOD_HELP),
    classwise: bool = typer.Option(
        True, "--classwise/--class-agnostic", help="One map per class (recommended) or one for all."
    ),
    target: str = typer.Option(
        "iou", "--target", help="iou: confidence = expected IoU (LaECE_0); tp: confidence = P(TP) (D-ECE)."
    ),
    iou: float = typer.Option(
        None,
        "--iou",
        min=0.0,
        max=0.999,
        help="IoU threshold of the TP rule (default: 0 for --target iou, 0.5 for tp).",
    ),
    predictions: Path = typer.Option(
        None, "--predictions", help="COCO results of the fit split (any detector); no model needed."
    ),
    eval_split: str = typer.Option(
        None, "--eval-split", help="Held-out split for before/after numbers (default: test, else val)."
    ),
    eval_predictions: Path = typer.Option(None, "--eval-predictions", help="COCO results of the evaluation split."),
    threshold: str = typer.Option(
        "lrp",
        "--threshold",
        help="Per-class operating threshold after calibration: lrp, f1, precision=0.9 or a fixed number.",
    ),
    pre_threshold: str = typer.Option(
        "auto",
        "--pre-threshold",
        help="Which raw scores the map is fitted on (nothing is dropped): auto (none for --target tp, lrp for iou), "
        "lrp, none or a number.",
    ),
    min_samples: int = typer.Option(
        10, "--min-samples", min=1, help="Classes with fewer fit detections keep the identity."
    ),
    force: bool = typer.Option(False, "--force", help="Allow evaluating on the split the calibrator was fitted on."),
    batch: int = typer.Option(8, "--batch", min=1, help="Inference batch size."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, ... (default: the model's choice)."),
    out: Path = typer.Option(
        None, "--out", help="Output calibrator.json (default: RUN/calibrator.json or runs/calibrate/calibrator.json)."
    ),
    json_mode: bool = typer.Option(False, "--json", help="Print one JSON object with the results on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="Only warnings and errors."),
) -> None:
    """Fit a post-hoc calibrator (and per-class thresholds) and show D-ECE / LaECE_0 / LaACE_0 / LRP / AP before and after.

    Defaults follow Kuzucu et al. (ECCV 2024): class-wise, IoU targets at IoU 0, LRP-optimal thresholds before
    and after; every detection is kept and calibrated (see docs/calibration.md). For D-ECE use --target tp.
    """  # noqa: E501 (the first line is the command's one-line help in `detkit --help`; a line break would show there)
    from detkit.calibration.calibrators import METHODS, TARGETS
    from detkit.stages.calibrate import calibrate, write_outputs

    if method not in METHODS:
        raise DetkitError(f"unknown --method {method!r}", hint=f"use one of: {', '.join(METHODS)}")
    if target not in TARGETS:
        raise DetkitError(f"unknown --target {target!r}", hint="use iou or tp")
    if model is None and predictions is None:
        raise DetkitError(
            "give a MODEL or --predictions with the detections of the fit split",
            hint="detkit calibrate runs/train/exp --data dataset.yaml",
        )
    ui = UI(json_mode, quiet)
    with ui.progress():
        result = calibrate(
            model,
            data,
            split=split,
            method=method,
            classwise=classwise,
            target=target,
            iou=iou,
            eval_split=eval_split,
            force=force,
            predictions=predictions,
            eval_predictions=eval_predictions,
            pre_threshold=pre_threshold,
            threshold=threshold,
            min_samples=min_samples,
            batch_size=batch,
            device=device,
            weights=weights,
        )
        paths = write_outputs(result, out or _default_out(model))
    for w in result.warnings:
        ui.warn(w)
    cal = result.calibrator
    ui.print(
        f"{cal.method} calibrator ({'class-wise' if cal.classwise else 'class-agnostic'}, target {cal.target}, "
        f"IoU {cal.iou_threshold:g}) fitted on '{result.fit_split}': "
        f"{cal.fit_info.get('num_fit_detections')} detections"
    )
    if result.eval_split:
        ui.table(
            f"Held-out split '{result.eval_split}' (percent, lower is better except AP)",
            ["metric", "before", "after"],
            [[name, _pct(b), _pct(a)] for name, b, a in result.rows()],
        )
    thresholds = cal.thresholds
    if thresholds is not None and len(cal.class_map) <= 30:
        pre = cal.pre_thresholds
        ui.table(
            "Per-class thresholds",
            ["class", "raw >=", "calibrated >=", "note"],
            [
                [n, _thr(pre[k] if pre is not None else None), _thr(thresholds[k]), cal.fallback.get(n, "")]
                for k, n in enumerate(cal.class_map.names)
            ],
        )
    for label, path in paths.items():
        ui.artifacts(label, path)
    ui.emit_json(
        {
            "calibrator": str(paths["calibrator"]),
            "artifacts": {k: str(v) for k, v in paths.items()},
            "method": cal.method,
            "classwise": cal.classwise,
            "target": cal.target,
            "iou_threshold": cal.iou_threshold,
            "fit_split": result.fit_split,
            "eval_split": result.eval_split,
            "fallback": cal.fallback,
            "evaluation": cal.evaluation,
            "warnings": result.warnings,
        }
    )


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _thr(v: float | None) -> str:
    if v is None or v != v:
        return "keep all"
    return "keep all" if v < 0 else f"{v:.3f}"
