"""``detkit data validate DATASET [--fix OUT] [--json] [--max-boxes N]``."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.data import app
from detkit.cli.ui import UI

MAX_ROWS = 40  # findings shown in the table; --json lists them all


@app.command("validate")
def validate(
    dataset: Path = typer.Argument(
        ...,
        help="dataset.yaml (or its folder; all splits are checked), a COCO JSON file or folder, a YOLO data.yaml or "
        "folder, or a VOC folder.",
    ),
    fix: Path | None = typer.Option(
        None, "--fix", help="Write a cleaned copy (detkit layout) to this folder and list every change."
    ),
    images: Path | None = typer.Option(
        None, "--images", help="Image folder of a plain COCO JSON (guessed when left out)."
    ),
    max_boxes: int = typer.Option(
        300, "--max-boxes", help="The model's query count: images with more boxes are reported."
    ),
    imbalance_ratio: float = typer.Option(
        20.0, "--imbalance-ratio", help="Warn when the most / least frequent class ratio exceeds this."
    ),
    fast: bool = typer.Option(
        False, "--fast", help="Read image headers only (skips the full decode that finds truncated files)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the --fix folder if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    """Report dataset anomalies (errors vs warnings) in any supported format; exit status 1 when there are errors
    (after --fix: in the copy)."""
    from detkit.data.validate import fix_dataset, validate_dataset

    ui = UI(json_mode=json_out, quiet=quiet)
    with ui.progress():
        report = validate_dataset(
            dataset, images=images, max_boxes=max_boxes, imbalance_ratio=imbalance_ratio, decode=not fast
        )
    ui.table(
        f"{report.source}",
        ["split", "images", "boxes"],
        [(s, len(v.coco.images), len(v.coco.annotations)) for s, v in report.splits.items()],
    )
    if report.findings:
        colour = {"error": "[red]error[/]", "warning": "[yellow]warning[/]"}
        rows = [
            (colour.get(f.severity, f.severity), f.check, f.split, f.file, f.record or "", f.message)
            for f in sorted(report.findings, key=lambda f: f.severity != "error")[:MAX_ROWS]
        ]
        more = len(report.findings) - MAX_ROWS
        ui.table(
            "findings" + (f" (first {MAX_ROWS}; {more} more with --json)" if more > 0 else ""),
            ["severity", "check", "split", "file", "record", "problem"],
            rows,
        )
        ui.table(
            "summary",
            ["check", "severity", "count"],
            [(c, v["severity"], v["count"]) for c, v in report.counts().items()],
        )
    verdict = "[green]no errors[/]" if report.ok else f"[red]{len(report.errors)} error(s)[/]"
    ui.print(f"{verdict}, {len(report.warnings)} warning(s)")
    result = report.to_dict()
    exit_ok = report.ok
    if fix is not None:
        with ui.progress():
            fixed = fix_dataset(report, fix, overwrite=overwrite)
        ui.table(
            f"changes written to {fixed.out}",
            ["split", "action", "check", "file", "record"],
            [(c["split"], c["action"], c["check"], c["file"], c.get("record") or "") for c in fixed.changes[:MAX_ROWS]],
        )
        recheck = validate_dataset(fixed.out, max_boxes=max_boxes, imbalance_ratio=imbalance_ratio, decode=False)
        exit_ok = recheck.ok
        ui.artifacts("fixed dataset", fixed.out)
        result["fix"] = {**fixed.to_dict(), "errors_after_fix": len(recheck.errors)}
    ui.emit_json(result)
    if not exit_ok:
        raise typer.Exit(1)
