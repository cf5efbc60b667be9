"""``detkit explain MODEL IMAGES...``: maps of what each top detection rests on, over the image, per image a sheet."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.ui import UI


def explain_command(
    model: str = typer.Argument(
        ..., help="Run dir or checkpoint (PyTorch) or model.onnx (drise only).", show_default=False
    ),
    images: list[Path] = typer.Argument(..., help="Image files or folders.", show_default=False),
    out: Path = typer.Option(..., "--out", help="Output folder (pictures, contact sheets, explanations.json)."),
    method: str = typer.Option(
        None, "--method", help="sampling | gradcam | drise [default: sampling; drise for ONNX]."
    ),
    top: int = typer.Option(5, "--top", help="Explain this many of the best detections per image."),
    conf: float = typer.Option(0.3, "--conf", help="Only detections with score >= CONF."),
    masks: int = typer.Option(256, "--masks", help="drise: random masks per image (cost: one inference each)."),
    device: str = typer.Option(None, "--device", help="PyTorch device: cpu, cuda, ..."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    json_mode: bool = typer.Option(
        False, "--json", help="Print one JSON object (per detection: peak, mass inside box) on stdout."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="Only warnings and errors."),
) -> None:
    """Show what each of the top detections of every image rests on: a heat map over the image with its box."""
    from detkit.stages.explain import explain

    ui = UI(json_mode, quiet)
    with ui.progress():
        result = explain(
            model, images, out, method=method, top=top, conf=conf, masks=masks, device=device, overwrite=overwrite
        )
    for s in result.skipped:
        ui.warn(f"skipped {s['source']}: {s['reason']}")
    rows = []
    for im in result.images:
        for d in im["detections"]:
            share = d["box_share"] or 0.0
            ratio = f"{d['mass_inside'] / share:.1f}x" if d["mass_inside"] is not None and share > 0 else "n/a"
            rows.append(
                (
                    Path(im["source"]).name,
                    d["rank"],
                    d["class"],
                    f"{d['score']:.2f}",
                    "n/a" if d["mass_inside"] is None else f"{100 * d['mass_inside']:.0f} %",
                    ratio,
                )
            )
    ui.table(f"explain ({result.method})", ["image", "#", "class", "score", "map mass in box", "vs uniform"], rows)
    if not rows:
        ui.warn("no detection reached the score threshold; lower --conf to explain weaker ones")
    ui.artifacts("explanations", result.out_dir)
    ui.emit_json(result.to_dict())
