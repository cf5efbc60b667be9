"""``detkit quickstart``: the whole chain on the embedded synthetic data."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.ui import UI


def quickstart(
    out: Path = typer.Argument(Path("runs/quickstart"), help="Folder that receives every artifact."),
    train_minutes: float = typer.Option(11.0, "--train-minutes", help="Wall-time budget of the training step (the whole chain takes about 3 minutes more on a 2-core CPU)."),
    train_images: int = typer.Option(1500, "--train-images", help="Synthetic training images."),
    eval_images: int = typer.Option(200, "--eval-images", help="Images in each of val, calib and test."),
    imgsz: int = typer.Option(256, "--imgsz", help="Image size of the synthetic data and the model input."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 … (default: cuda when available)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty output folder."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with paths and numbers."),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """synth → validate → train → eval (robustness, calibration) → calibrate → export → predict → bench."""
    from detkit.quickstart import run_quickstart, summary_rows

    ui = UI(json_mode=json_out, quiet=quiet)
    with ui.progress():
        result = run_quickstart(out, train_minutes=train_minutes, train_images=train_images, eval_images=eval_images,
                                imgsz=imgsz, seed=seed, device=device, overwrite=overwrite, log=lambda m: ui.print(f"[bold cyan]{m}[/]"))
    ui.table("detkit quickstart", ["", "value"], summary_rows(result))
    for label, path in result.paths.items():
        ui.artifacts(label, path)
    ui.emit_json(result.to_dict())
