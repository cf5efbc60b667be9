"""``detkit bench MODEL``: latency per backend, batch size and threads (pre / inference / post), table + JSON."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from detkit.cli.ui import UI
from detkit.errors import DetkitError


def _ints(value: str, what: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise DetkitError(
            f"{what} must be a comma-separated list of integers, got {value!r}", hint=f"e.g. {what} 1,4"
        ) from None
    if not items:
        raise DetkitError(f"{what} is empty", hint=f"e.g. {what} 1,4")
    return items


def latency_table(result) -> tuple[str, list[str], list[list]]:
    """(title, columns, rows) of the latency table; settings shared by every row go into the title, not a column."""
    fields = [
        ("backend", "backend"),
        ("precision", "precision"),
        ("batch", "batch"),
        ("threads", "threads"),
        ("pre", "pre_ms"),
        ("infer", "infer_ms"),
        ("post", "post_ms"),
        ("total", "total_ms"),
        ("p90", "total_p90_ms"),
        ("img/s", "images_per_s"),
    ]
    shared = {
        name: getattr(result.rows[0], attr)
        for name, attr in fields[:4]
        if result.rows and len({getattr(r, attr) for r in result.rows}) == 1 and name != "batch"
    }
    kept = [(name, attr) for name, attr in fields if name not in shared]
    setting = ", ".join(f"{v} thread{'s' * (v != 1)}" if k == "threads" else str(v) for k, v in shared.items())
    title = (
        f"latency at {result.imgsz[0]}×{result.imgsz[1]}{', ' + setting if setting else ''} "
        f"(ms, median of {result.iters}; p90 of total)"
    )
    columns = [name for name, _ in kept]
    rows = [[getattr(r, attr) for _, attr in kept] for r in result.rows]
    if result.accuracy:  # AP of each variant, measured from the same file that was timed
        columns.append(f"AP {next(iter(result.accuracy.values()))['split']}")
        for row, r in zip(rows, result.rows):
            row.append(round(100 * r.ap, 2) if r.ap is not None else "—")
    return title, columns, rows


def bench_command(
    model: str = typer.Argument(
        ...,
        help=(
            "Run dir, checkpoint, model.onnx, bare official RT-DETR .pth / Hugging Face .safetensors, "
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
    backends: str = typer.Option(
        "torch,onnxruntime",
        "--backends",
        help="Comma-separated: torch, onnxruntime, openvino (extra 'detkit[openvino]'; runs the ONNX file).",
    ),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, comma-separated, e.g. 1,4."),
    imgsz: int = typer.Option(None, "--imgsz", help="Square input size (multiple of 32) [default: the model's]."),
    threads: str = typer.Option(
        None, "--threads", help="CPU thread counts, comma-separated [default: torch's current]."
    ),
    iters: int = typer.Option(10, "--iters", min=1, help="Timed iterations per configuration."),
    warmup: int = typer.Option(3, "--warmup", min=3, help="Untimed warm-up iterations (>= 3)."),
    device: str = typer.Option(None, "--device", help="PyTorch device (cpu, cuda, ...)."),
    variants: str = typer.Option(
        None, "--variants", help="ONNX precisions to time, comma-separated: fp32, fp16, int8 [default: the file's own]."
    ),
    data: Path = typer.Option(
        None, "--data", help="Dataset: AP of every variant on --split, and INT8 calibration images."
    ),
    split: str = typer.Option(None, "--split", help="Split for the AP column [default: val, else test]."),
    calib_split: str = typer.Option("calib", "--calib-split", help="Split calibrating a derived int8 variant."),
    out: Path = typer.Option(None, "--out", help="JSON file for the results [default: runs/bench/bench-<time>.json]."),
    json_mode: bool = typer.Option(False, "--json", help="Print one JSON object with the results on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="Only warnings and errors."),
) -> None:
    """Measure end-to-end latency (pre-processing, inference, post-processing; median and p90) of a model."""
    from detkit.stages.bench import benchmark
    from detkit.utils.atomic import atomic_write_json

    ui = UI(json_mode, quiet)
    with ui.progress():
        result = benchmark(
            model,
            backends=[b.strip() for b in backends.split(",") if b.strip()],
            batch_sizes=_ints(batch, "--batch"),
            imgsz=(imgsz, imgsz) if imgsz else None,
            threads=_ints(threads, "--threads") if threads else None,
            iters=iters,
            warmup=warmup,
            device=device,
            weights=weights,
            class_map=classes,
            variants=[v.strip() for v in variants.split(",") if v.strip()] if variants else None,
            data=data,
            split=split,
            calib_split=calib_split,
        )
    for n in result.notes:
        ui.print(f"[dim]note: {n}[/]")
    ui.print(
        f"device: {result.device['cpu']} ({result.device['logical_cores']} logical cores), "
        f"torch on {result.device['torch_device']}"
        + (f", GPU {result.device['gpu']}" if "gpu" in result.device else "")
    )
    ui.print("versions: " + ", ".join(f"{k} {v}" for k, v in result.versions.items()))
    title, columns, rows = latency_table(result)
    ui.table(title, columns, rows, optional=("pre", "post", "p90"))
    path = out or Path("runs/bench") / f"bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_json(path, result.to_dict())
    ui.artifacts("results", path)
    ui.emit_json({**result.to_dict(), "results": str(path)})
