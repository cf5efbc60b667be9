"""``detkit data convert SRC OUT --to coco|yolo|voc|fiftyone:<TYPE> [--from ...]``."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.data import app
from detkit.cli.ui import UI


@app.command("convert")
def convert(
    src: Path = typer.Argument(..., help="Source dataset: dataset.yaml, COCO JSON or folder, YOLO data.yaml or folder, VOC folder, or a FiftyOne dataset folder."),
    out: Path = typer.Argument(..., help="Output folder (must not exist or be empty unless --overwrite)."),
    to: str = typer.Option("coco", "--to", help="coco (detkit dataset.yaml layout) | yolo | voc | fiftyone:<TYPE> (e.g. fiftyone:CVATImageDataset)."),
    src_format: str = typer.Option("auto", "--from", help="auto | coco | yolo | voc | fiftyone:<TYPE>."),
    images: Path | None = typer.Option(None, "--images", help="Image folder of a plain COCO JSON source (guessed when left out)."),
    classes: str | None = typer.Option(None, "--classes", help="Comma-separated class order for VOC sources (objects of other classes are errors)."),
    link: bool = typer.Option(False, "--link", help="Hard-link images instead of copying them (falls back to copying)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    """Convert a dataset between COCO, YOLO, Pascal VOC and FiftyOne formats (lossless round trips)."""
    from detkit.data.convert import convert_dataset

    ui = UI(json_mode=json_out, quiet=quiet)
    class_list = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    with ui.progress():
        result = convert_dataset(src, out, to=to, src_format=src_format, images=images, classes=class_list, overwrite=overwrite, link=link)
    rows = [(s, v["images"], v["boxes"]) for s, v in result.splits.items()]
    ui.table(f"{result.src_format} → {result.to}: {len(result.class_names)} classes", ["split", "images", "boxes"], rows)
    ui.artifacts("dataset", result.out)
    ui.emit_json(result.to_dict())
