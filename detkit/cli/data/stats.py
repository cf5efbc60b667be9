"""``detkit data stats DATASET``: per-class counts, size buckets, histograms and optional PNG plots."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.data import app
from detkit.cli.ui import UI


@app.command("stats")
def stats_command(
    dataset: Path = typer.Argument(..., help="dataset.yaml or the folder holding it."),
    split: list[str] = typer.Option(None, "--split", "-s", help="Split(s) to include (repeatable; default: all)."),
    plots: Path = typer.Option(
        None, "--plots", help="Write PNG plots (class counts, sizes, aspects, objects per image, centres) here."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only warnings and errors."),
) -> None:
    """Show per-class images and boxes, COCO size buckets, box size / aspect histograms and objects per image."""
    from detkit.data.stats import dataset_stats

    ui = UI(json_mode=json_out, quiet=quiet)
    with ui.progress():
        stats = dataset_stats(dataset, splits=split or None, plots=plots)
    ui.table(
        "splits",
        ["split", "images", "boxes", "empty images", "boxes per image", "max per image", "small", "medium", "large"],
        [
            (
                name,
                s["images"],
                s["boxes"],
                s["empty_images"],
                s["boxes_per_image"]["mean"],
                s["boxes_per_image"]["max"],
                s["sizes"]["small"],
                s["sizes"]["medium"],
                s["sizes"]["large"],
            )
            for name, s in [*stats["splits"].items(), ("all", stats["all"])]
        ],
    )
    total = stats["all"]
    ui.table(
        "classes (all splits)",
        [
            "label",
            "class",
            "id",
            "images",
            "boxes",
            "share",
            "small",
            "medium",
            "large",
            "median size px",
            "median w/h",
        ],
        [
            (
                i,
                c["name"],
                c["category_id"],
                c["images"],
                c["boxes"],
                f"{100 * c['boxes'] / max(total['boxes'], 1):.1f} %",
                c["small"],
                c["medium"],
                c["large"],
                "-" if c["median_size"] is None else f"{c['median_size']:.1f}",
                "-" if c["median_aspect"] is None else f"{c['median_aspect']:.2f}",
            )
            for i, c in enumerate(total["classes"])
        ],
        optional=("label", "id", "median w/h", "images"),
    )
    ui.table("box size sqrt(area) px", list(total["size_histogram"]), [list(total["size_histogram"].values())])
    ui.table("aspect ratio w/h", list(total["aspect_histogram"]), [list(total["aspect_histogram"].values())])
    skipped = total["skipped_annotations"]
    if skipped["unknown_category"] or skipped["unknown_image"]:
        ui.warn(
            f"{skipped['unknown_category']} annotations with unknown categories and "
            f"{skipped['unknown_image']} with unknown "
            "images were left out; run `detkit data validate` for details"
        )
    if plots is not None:
        ui.artifacts("plots", plots)
    ui.emit_json(stats)
