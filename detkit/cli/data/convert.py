"""``detkit data convert SRC OUT --to coco|yolo|voc|fiftyone:<TYPE> [--from ...]``."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.data import app
from detkit.cli.ui import UI


@app.command("convert")
def convert(
    src: Path = typer.Argument(
        ...,
        help=(
            "Source dataset: dataset.yaml, COCO JSON or folder, YOLO data.yaml or folder, VOC folder, "
            "or a FiftyOne dataset folder."
        ),
    ),
    out: Path = typer.Argument(..., help="Output folder (must not exist or be empty unless --overwrite)."),
    to: str = typer.Option(
        "coco",
        "--to",
        help="coco (detkit dataset.yaml layout) | yolo | voc | fiftyone:<TYPE> (e.g. fiftyone:CVATImageDataset).",
    ),
    src_format: str = typer.Option("auto", "--from", help="auto | coco | yolo | voc | fiftyone:<TYPE>."),
    images: Path | None = typer.Option(
        None, "--images", help="Image folder of a plain COCO JSON source (guessed when left out)."
    ),
    classes: str | None = typer.Option(
        None, "--classes", help="Comma-separated class order for VOC sources (objects of other classes are errors)."
    ),
    link: bool = typer.Option(
        False, "--link", help="Hard-link images instead of copying them (falls back to copying)."
    ),
    skip_invalid: bool = typer.Option(
        False,
        "--skip-invalid",
        help="Leave out the records `detkit data validate` calls errors (instead of refusing) and list them in "
        "OUT/convert_report.json.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    """Convert a dataset between COCO, YOLO, Pascal VOC and FiftyOne formats (lossless round trips).

    What is read is checked with `detkit data validate`'s rules first: invalid records are refused (nothing is
    written) unless --skip-invalid leaves them out."""
    from detkit.data.convert import convert_dataset

    ui = UI(json_mode=json_out, quiet=quiet)
    class_list = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    with ui.progress():
        result = convert_dataset(
            src,
            out,
            to=to,
            src_format=src_format,
            images=images,
            classes=class_list,
            overwrite=overwrite,
            link=link,
            skip_invalid=skip_invalid,
        )
    rows = [(s, v["images"], v["boxes"]) for s, v in result.splits.items()]
    ui.table(
        f"{result.src_format} → {result.to}: {len(result.class_names)} classes", ["split", "images", "boxes"], rows
    )
    if result.warnings:
        counts = ", ".join(f"{n} {c}" for c, n in result.warnings.items())
        total = sum(result.warnings.values())
        _warn(ui, f"{total} warning(s) in {src}: {counts} (details: detkit data validate {src})")
    if result.report is not None:
        if result.dropped:
            _warn(ui, f"left out {len(result.dropped)} invalid record(s), listed in {result.report}")
        ui.artifacts("report", result.report)
    ui.artifacts("dataset", result.out)
    ui.emit_json(result.to_dict())


def _warn(ui: UI, message: str) -> None:
    """One yellow line on stderr, never wrapped (scripts grep it)."""
    from rich.markup import escape

    ui.err.print(f"[yellow]warning:[/] {escape(message)}", markup=True, soft_wrap=True)
