"""``detkit export onnx MODEL``: a verified ONNX graph (images + original sizes → labels, boxes,
scores) + model.json."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from detkit.cli.ui import UI
from detkit.errors import DetkitError

app = typer.Typer(no_args_is_help=True, help="Export a trained model for deployment.")


@contextmanager
def export_flag_hints() -> Iterator[None]:
    """Re-raise the export library's errors (which name its parameters) with a hint naming this command's flags,
    and ``--debug`` where a tool's own error lies underneath."""
    from detkit.export.errors import ExportError

    try:
        yield
    except ExportError as e:
        extra = []  # the flags that set e.params are added by the app's error handler (detkit/cli/flags.py)
        if e.__cause__ is not None and not isinstance(e.__cause__, DetkitError):
            extra.append("re-run with --debug for the traceback")
        if not extra:
            raise
        hint = f"{e.hint} ({'; '.join(extra)})" if e.hint else "; ".join(extra)
        raise ExportError(e.message, hint=hint, params=e.params) from e


@app.command("onnx")
def onnx_command(
    model: str = typer.Argument(
        ...,
        help=(
            "Run dir, checkpoint (.pt), bare official RT-DETR .pth / Hugging Face .safetensors, "
            "or recipe:NAME (with --weights)."
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
    classes: Path = typer.Option(
        None,
        "--classes",
        help="dataset.yaml or names file (one class per line): the classes of weights that carry none.",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Output .onnx file (model.json is written beside it) [default: model.onnx, model_int8.onnx with --int8].",
    ),
    calibrator: Path = typer.Option(
        None, "--calibrator", help="calibrator.json to embed: the graph then returns calibrated scores."
    ),
    imgsz: tuple[int, int] | None = typer.Option(
        None, "--imgsz", help="Input height and width, multiples of 32 [default: the model's]."
    ),
    dynamic_batch: bool = typer.Option(
        True, "--dynamic-batch/--static-batch", help="Symbolic batch dimension (default) or a fixed batch of 1."
    ),
    opset: int = typer.Option(17, "--opset", help="ONNX opset, 16..20 (GridSample needs >= 16)."),
    fp16: bool = typer.Option(
        False,
        "--fp16",
        help="Half-precision weights and compute (I/O types unchanged); verified with looser bounds (2e-2).",
    ),
    decoder_layers: int = typer.Option(
        None, "--decoder-layers", help="Run only the first K decoder layers (faster; any prefix is a valid detector)."
    ),
    simplify: bool = typer.Option(
        False, "--simplify", help="Simplify with onnxslim; kept only if the batch dim stays dynamic and parity holds."
    ),
    verify: bool = typer.Option(
        True,
        "--verify/--no-verify",
        help="Check parity with PyTorch at batch 1 and 3 before writing (fails on disagreement).",
    ),
    verify_images: list[Path] = typer.Option(
        None, "--verify-image", help="Real image(s) to add to the parity check (repeatable)."
    ),
    int8: bool = typer.Option(
        False, "--int8", help="Quantize to INT8 (onnxruntime static QDQ) with a measured AP cost; needs --calib-data."
    ),
    calib_data: Path = typer.Option(
        None,
        "--calib-data",
        help="Dataset (dataset.yaml or its folder) giving the INT8 calibration and evaluation images.",
    ),
    calib_split: str = typer.Option("calib", "--calib-split", help="Split whose images calibrate the INT8 ranges."),
    calib_images: int = typer.Option(100, "--calib-images", help="Number of calibration images (seeded choice)."),
    int8_method: str = typer.Option(
        "minmax", "--int8-method", help="Calibration method: minmax, entropy or percentile."
    ),
    eval_split: str = typer.Option(
        None, "--eval-split", help="Split on which fp32 and INT8 AP are compared [default: val, else test]."
    ),
    max_ap_drop: float = typer.Option(
        1.0, "--max-ap-drop", help="Refuse the INT8 file when AP drops by more than this many points."
    ),
    max_float_groups: int = typer.Option(
        3, "--max-float-groups", help="At most this many node groups kept in float (worst first, by measurement)."
    ),
    drop_below_threshold: bool = typer.Option(
        False,
        "--drop-below-threshold",
        help="With --calibrator: the graph sets the score of detections outside the calibrator's per-class operating "
        "point to 0 (default: keep all; predict applies the thresholds).",
    ),
    json_mode: bool = typer.Option(False, "--json", help="Print one JSON object with the result on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="Only warnings and errors."),
) -> None:
    """Export MODEL to ONNX: uint8 images [N,3,H,W] at the model size + orig_sizes [N,2] (w, h) → labels, boxes
    (xyxy, original pixels), scores. Verified against PyTorch; a failing export leaves no model file."""
    from detkit.export.targets import export_model, export_target

    ui = UI(json_mode, quiet)
    size = None if imgsz is None or imgsz[0] is None else imgsz
    if int8 or calib_data is not None:
        from detkit.cli.export_int8 import export_int8_command

        int8_options = {
            "calib_data": calib_data,
            "calib_split": calib_split,
            "calib_images": calib_images,
            "method": int8_method,
            "eval_split": eval_split,
            "max_ap_drop": max_ap_drop,
            "max_float_groups": max_float_groups,
        }
        export_options = {
            "calibrator": calibrator,
            "imgsz": size,
            "dynamic_batch": dynamic_batch,
            "opset": opset,
            "fp16": fp16,
            "decoder_layers": decoder_layers,
            "simplify": simplify,
            "verify": verify,
            "verify_images": verify_images or (),
            "weights": weights,
            "class_map": classes,
        }
        with export_flag_hints():
            export_int8_command(ui, model, out, int8, int8_options, export_options)
        return
    out = out or Path(export_target("onnx").default_out)
    ui.print(f"exporting [bold]{model}[/] to ONNX (opset {opset}{', fp16' if fp16 else ''}) ...")
    with export_flag_hints():
        result = export_model(
            model,
            "onnx",
            out,
            calibrator=calibrator,
            imgsz=size,
            dynamic_batch=dynamic_batch,
            opset=opset,
            fp16=fp16,
            decoder_layers=decoder_layers,
            simplify=simplify,
            verify=verify,
            verify_images=verify_images or (),
            weights=weights,
            class_map=classes,
            drop_below_threshold=drop_below_threshold,
        )
    for w in result.warnings:
        ui.warn(w)
    meta = result.metadata
    rows = [
        (
            "input",
            f"uint8 [{'N' if meta['dynamic_batch'] else 1},3,{meta['imgsz'][0]},{meta['imgsz'][1]}] "
            "+ orig_sizes (w, h)",
        ),
        ("classes", str(meta["num_classes"])),
        ("opset / precision", f"{meta['opset']} / {meta['precision']}"),
        ("decoder layers", f"{meta['decoder_layers']} of {meta['decoder_layers_trained']}"),
        ("calibrator", meta["calibrator"]["method"] if meta["calibrator"] else "none"),
        *(
            [
                (
                    "operating point",
                    "applied in the graph"
                    if meta["operating_point"]["applied_in_graph"]
                    else "recorded (predict applies it)",
                )
            ]
            if meta.get("operating_point")
            else []
        ),
        ("simplified", "yes" if result.simplified else "no"),
    ]
    if result.parity is not None:
        p = result.parity
        rows += [
            ("parity max |Δscore| (raw)", f"{p.max_abs_diff_scores:.2e} (tolerance {p.tolerance['scores']:g})"),
            ("parity max |Δbox|", f"{p.max_abs_diff_boxes:.2e} normalised, {p.max_abs_diff_boxes_px:.2e} px"),
            *([("calibrator in graph max |Δ|", f"{p.max_calibration_error:.2e}")] if meta["calibrator"] else []),
            (f"top-{p.top_k} agreement", f"labels {p.topk_label_agreement:.1%}, order {p.topk_order_agreement:.1%}"),
            ("checked", f"{p.num_images} images at batch {', '.join(map(str, p.batch_sizes))}"),
        ]
    else:
        ui.warn("parity with PyTorch was not verified (--no-verify)")
    ui.table("ONNX export", ["", "value"], rows)
    ui.artifacts("model", result.model_path)
    ui.artifacts("metadata", result.metadata_path)
    ui.emit_json(
        {
            "model": str(result.model_path),
            "metadata": str(result.metadata_path),
            "simplified": result.simplified,
            "parity": result.parity.to_dict() if result.parity else None,
            "warnings": result.warnings,
        }
    )
