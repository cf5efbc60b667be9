"""``detkit data split DATASET OUT``: seeded, class-stratified train/val/calib/test split of all images."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.data import app
from detkit.cli.ui import UI


@app.command("split")
def split_command(
    dataset: Path = typer.Argument(..., help="dataset.yaml or the folder holding it (all its splits are pooled)."),
    out: Path = typer.Argument(..., help="Output folder for the re-split dataset."),
    ratios: str = typer.Option(
        None, "--ratios", help="Fractions summing to 1 (default: train=0.8,val=0.1,calib=0.05,test=0.05)."
    ),
    counts: str = typer.Option(
        None, "--counts", help="Image counts instead of ratios, e.g. val=100,calib=50,test=50,train=rest."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same split."),
    copy: bool = typer.Option(False, "--copy", help="Copy image files instead of hard-linking them."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists and is not empty."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only warnings and errors."),
) -> None:
    """Pool every image, then split it by class (stratified on each image's rarest class) with exact sizes."""
    from detkit.data.split import split_dataset

    ui = UI(json_mode=json_out, quiet=quiet)
    with ui.progress():
        summary = split_dataset(
            dataset, out, ratios=ratios, counts=counts, seed=seed, link=not copy, overwrite=overwrite
        )
    classes = summary["classes"]
    ui.table(
        f"split (seed {seed}): images per class",
        ["split", "images", "boxes", *classes],
        [(name, s["images"], s["boxes"], *s["images_per_class"]) for name, s in summary["splits"].items()],
    )
    if summary["unassigned_images"]:
        ui.warn(
            f"{summary['unassigned_images']} images were not assigned to any split (the counts ask for fewer images)"
        )
    if summary["skipped_splits"]:
        ui.warn(f"no images left for: {', '.join(summary['skipped_splits'])} (split left out)")
    ui.artifacts("dataset", summary["dataset"])
    ui.emit_json(summary)
