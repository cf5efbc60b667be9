"""``detkit predict MODEL SOURCE...``: detections on images, folders and videos, drawn and as JSON lines."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.slicing_options import overlap_option, slice_option, slicing_flag_hints, slicing_kwargs
from detkit.cli.ui import UI


def predict_command(
    model: str = typer.Argument(
        ...,
        help=(
            "Run dir, checkpoint, bare official RT-DETR .pth / Hugging Face .safetensors, "
            "recipe:NAME with --weights (PyTorch) or model.onnx (onnxruntime)."
        ),
        show_default=False,
    ),
    sources: list[Path] = typer.Argument(..., help="Image files, video files or folders.", show_default=False),
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
    conf: float = typer.Option(
        None,
        "--conf",
        help="Keep detections with score > CONF [default: the calibrator's per-class thresholds, else 0.5].",
    ),
    calibrator: Path = typer.Option(
        None, "--calibrator", help="calibrator.json: calibrated scores and its per-class thresholds."
    ),
    out: Path = typer.Option(None, "--out", help="Output folder [default: runs/predict/predict, predict2, ...]."),
    batch: int = typer.Option(4, "--batch", min=1, help="Images (or video frames) per forward pass."),
    device: str = typer.Option(
        None, "--device", help="PyTorch device: cpu, cuda, ... (ONNX uses CUDA when available)."
    ),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads for inference."),
    save: bool = typer.Option(
        True, "--save/--no-save", help="Write annotated images / videos (predictions.jsonl is always written)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    slice_hw: tuple[int, int] = slice_option(),
    overlap: float = overlap_option(),
    backend: str = typer.Option(
        None,
        "--backend",
        help="Runtime of an exported .onnx MODEL: onnxruntime or openvino (extra 'detkit[openvino]') "
        "[default: onnxruntime].",
    ),
    json_mode: bool = typer.Option(False, "--json", help="Print one JSON object with the result on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="Only warnings and errors."),
) -> None:
    """Detect objects in images, folders and videos; unreadable files are reported and skipped."""
    from detkit.stages.predict import predict

    ui = UI(json_mode, quiet)
    slicing = slicing_kwargs(slice_hw, overlap)
    with ui.progress(), slicing_flag_hints():
        result = predict(
            model,
            sources,
            out=out,
            conf=conf,
            calibrator=calibrator,
            batch_size=batch,
            device=device,
            threads=threads,
            save_media=save,
            overwrite=overwrite,
            weights=weights,
            class_map=classes,
            backend=backend,
            **slicing,
        )
    for s in result.skipped:
        ui.warn(f"skipped {s['source']}: {s['reason']}")
    ui.table(
        "predict",
        ["", "value"],
        [
            ("backend", result.backend),
            ("kept", result.selection),
            *([("sliced", f"{slice_hw[0]}×{slice_hw[1]} tiles, overlap {slicing['overlap']:g}")] if slice_hw else []),
            ("images", result.images),
            ("videos (frames)", f"{result.videos} ({result.frames})"),
            ("detections", result.detections),
            ("skipped", len(result.skipped)),
        ],
    )
    ui.artifacts("predictions", result.predictions_path)
    if save and len(result.outputs) > 1:
        ui.artifacts("annotated images/videos", result.out_dir)
    ui.emit_json(result.to_dict())
