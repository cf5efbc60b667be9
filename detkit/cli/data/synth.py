"""``detkit data synth OUT``: write the embedded synthetic shapes dataset (optionally with COCO-O-style domains)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from detkit.cli.data import app
from detkit.cli.ui import UI


@app.command("synth")
def synth_command(
    out: Path = typer.Argument(..., help="Output folder for the dataset (dataset.yaml, images/, annotations/)."),
    train: int = typer.Option(1500, "--train", help="Number of training images."),
    val: int = typer.Option(200, "--val", help="Number of validation images."),
    calib: int = typer.Option(200, "--calib", help="Number of calibration images (held out for calibrators)."),
    test: int = typer.Option(200, "--test", help="Number of test images."),
    imgsz: int = typer.Option(None, "--imgsz", help="Image side in pixels [default: 256, with --small 1024]."),
    small: bool = typer.Option(
        False, "--small", help="Small-object variant: 20-60 objects of 8-32 px per image (for sliced inference)."
    ),
    domains: bool = typer.Option(
        False, "--domains", help="Also write the test split in six COCO-O-style domains under OUT/coco_o/."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same dataset."),
    workers: int = typer.Option(
        0, "--workers", help="Processes rendering in parallel (0: one per CPU core for large sets)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists and is not empty."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only warnings and errors."),
) -> None:
    """Generate the synthetic shapes dataset (circle, square, triangle, star, cross) with exact boxes."""
    from detkit.data.styles import DOMAINS
    from detkit.data.synth import CLASSES, COCO_O_DIR, SMALL, STANDARD, generate_synthetic

    ui = UI(json_mode=json_out, quiet=quiet)
    start = time.perf_counter()
    imgsz = imgsz if imgsz is not None else (SMALL if small else STANDARD).imgsz
    with ui.progress():
        path = generate_synthetic(
            out,
            train=train,
            val=val,
            calib=calib,
            test=test,
            imgsz=imgsz,
            domains=domains,
            seed=seed,
            overwrite=overwrite,
            workers=workers,
            small=small,
        )
    seconds = time.perf_counter() - start
    counts = {"train": train, "val": val, "calib": calib, "test": test}
    splits = {k: v for k, v in counts.items() if v > 0}
    n_images = sum(splits.values()) + (len(DOMAINS) * test if domains else 0)
    ui.table("synthetic dataset", ["split", "images"], [(k, v) for k, v in splits.items()])
    kind = "; small objects (8-32 px)" if small else ""
    ui.print(
        f"{len(CLASSES)} classes: {', '.join(CLASSES)}; {imgsz}x{imgsz} px{kind}; seed {seed}; "
        f"{n_images} images in {seconds:.1f} s"
    )
    ui.artifacts("dataset", path / "dataset.yaml")
    result = {
        "dataset": str(path / "dataset.yaml"),
        "root": str(path),
        "splits": splits,
        "classes": list(CLASSES),
        "imgsz": imgsz,
        "small": small,
        "seed": seed,
        "seconds": round(seconds, 3),
    }
    if domains:
        ui.artifacts("COCO-O-style domains", path / COCO_O_DIR)
        result["coco_o"] = str(path / COCO_O_DIR)
        result["domains"] = list(DOMAINS)
    ui.emit_json(result)
