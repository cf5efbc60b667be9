"""``detkit data augment DATASET --recipe R``: preview the training augmentation, or write augmented copies."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.data import app
from detkit.cli.ui import UI
from detkit.errors import DetkitError


@app.command("augment")
def augment_command(
    dataset: Path = typer.Argument(..., help="dataset.yaml or the folder holding it."),
    recipe: str = typer.Option(
        ..., "--recipe", "-r", help="recipe:NAME, a recipe YAML with an augment: section, or the section itself."
    ),
    preview: int = typer.Option(
        None, "--preview", help="Write a PNG grid of N augmented samples with boxes and class names."
    ),
    preview_file: Path = typer.Option(
        None,
        "--preview-file",
        help=(
            "Where the preview grid goes (default: runs/augment/preview_<split>.png, "
            "or OUT/../<OUT name>_preview.png with --out)."
        ),
    ),
    out: Path = typer.Option(None, "--out", help="Write an augmented dataset here (the chosen split only)."),
    copies: int = typer.Option(1, "--copies", help="Augmented copies per image with --out."),
    split: str = typer.Option("train", "--split", help="Split to augment."),
    imgsz: int = typer.Option(
        None,
        "--imgsz",
        help="Output size (default: the recipe's train imgsz for previews, else 640; each image's own size for --out).",
    ),
    epoch: int = typer.Option(
        None, "--epoch", help="Preview the pipeline of this 0-based epoch (heavy ops stop at stop_epoch)."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Total epochs, when stop_epoch is a fraction of the run."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists and is not empty."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only warnings and errors."),
) -> None:
    """Show what the training augmentation does (--preview N) or write augmented copies (--out DIR --copies K)."""
    from detkit.config.augment_section import load_augment_config
    from detkit.data.augment import EpochAugmentation
    from detkit.data.augment_offline import preview_augmentations, write_augmented_dataset

    if preview is None and out is None:
        raise DetkitError("nothing to do: pass --preview N and/or --out DIR", hint="e.g. --preview 16")
    ui = UI(json_mode=json_out, quiet=quiet)
    cfg, recipe_imgsz = load_augment_config(recipe)
    result: dict = {"recipe": recipe, "split": split, "seed": seed}
    size = imgsz or recipe_imgsz or 640
    result["pipeline"] = list(EpochAugmentation(cfg, imgsz=size, train=True, epoch=epoch, total_epochs=epochs).op_names)
    ui.print(f"pipeline: {' → '.join(result['pipeline'])}")
    with ui.progress():
        if preview is not None:
            target = preview_file or (
                out.parent / f"{out.name}_preview.png"
                if out is not None
                else Path("runs/augment") / f"preview_{split}.png"
            )
            path = preview_augmentations(
                dataset, cfg, preview, target, split=split, seed=seed, imgsz=size, epoch=epoch, total_epochs=epochs
            )
            result["preview"] = str(path)
        if out is not None:
            result["dataset"] = write_augmented_dataset(
                dataset, cfg, out, copies, split=split, seed=seed, imgsz=imgsz, overwrite=overwrite
            )
    if "dataset" in result:
        d = result["dataset"]
        ui.table(
            "augmented dataset",
            ["split", "source images", "copies", "images", "boxes"],
            [(d["split"], d["source_images"], d["copies"], d["images"], d["boxes"])],
        )
        ui.artifacts("augmented dataset", d["dataset"])
    if "preview" in result:
        ui.artifacts("preview", result["preview"])
    ui.emit_json(result)
