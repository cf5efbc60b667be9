"""``detkit view EVAL_DIR``: open an evaluation in the FiftyOne App with TP/FP/FN tags (the ``fiftyone`` extra)."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.ui import UI


def view_command(
    eval_dir: Path = typer.Argument(..., help="An eval dir written by `detkit eval` (runs/eval/<name>/)."),
    port: int = typer.Option(5151, "--port", help="Port of the App on localhost."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only serve the App; do not open a browser tab."),
    iou: float = typer.Option(0.5, "--iou", min=0.0, max=1.0, help="IoU threshold of the TP/FP/FN tags."),
) -> None:
    """Look at an evaluation's failures: ground truth, predictions and TP/FP/FN tags in the FiftyOne App. Ctrl-C stops it."""  # noqa: E501 (one-line help in `detkit --help`)
    from detkit.evaluation.view import serve_eval

    ui = UI()

    def ready(url: str, dataset) -> None:
        ui.print(f"[green]✓[/] FiftyOne App: [bold]{url}[/] ({len(dataset)} images, dataset '{dataset.name}')")
        ui.print("  filter boxes by the label tags tp / fp / fn, sort samples by 'fn' or 'fp'; Ctrl-C to stop")

    with ui.progress():
        serve_eval(eval_dir, port=port, open_browser=not no_browser, iou_threshold=iou, on_ready=ready)
    ui.print("App and FiftyOne services stopped.")
