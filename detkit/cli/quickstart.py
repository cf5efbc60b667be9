"""``detkit quickstart``: the whole chain on the embedded synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from detkit.cli.ui import UI


def quickstart(
    out: Path = typer.Argument(Path("runs/quickstart"), help="Folder that receives every artifact."),
    train_minutes: float = typer.Option(
        11.0,
        "--train-minutes",
        help="Wall-time budget of the training step (the whole chain takes about 3 minutes more on a 2-core CPU).",
    ),
    train_images: int = typer.Option(1500, "--train-images", help="Synthetic training images."),
    eval_images: int = typer.Option(200, "--eval-images", help="Images in each of val, calib and test."),
    imgsz: int = typer.Option(256, "--imgsz", help="Image size of the synthetic data and the model input."),
    seed: int = typer.Option(0, "--seed"),
    recipe: str = typer.Option("rtdetr-r18-cpu", "--recipe", help="Recipe to train (any family), e.g. dfine-n-cpu."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 … (default: cuda when available)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty output folder."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with paths and numbers."),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """synth → validate → train → eval (robustness, calibration) → calibrate → export → predict → bench."""
    from detkit.stages.quickstart import run_quickstart

    ui = UI(json_mode=json_out, quiet=quiet)
    with ui.progress():
        result = run_quickstart(
            out,
            train_minutes=train_minutes,
            train_images=train_images,
            eval_images=eval_images,
            imgsz=imgsz,
            seed=seed,
            device=device,
            overwrite=overwrite,
            recipe=recipe,
            log=lambda m: ui.print(f"[bold cyan]{m}[/]"),
        )
    ui.table("detkit quickstart", ["", "value"], summary_rows(result))
    for label, path in result.paths.items():
        ui.artifacts(label, path)
    ui.emit_json(result.to_dict())


def summary_rows(result: Any) -> list[tuple[str, str]]:
    """(what, value) rows for the final table; AP-style metrics are shown in percent."""
    s = result.summary

    def pct(v: Any) -> str:
        return "—" if v is None else f"{100 * v:.1f}"

    def num(v: Any, fmt: str = "{:.3g}") -> str:
        return "—" if v is None else fmt.format(v)

    return [
        ("val AP50 (best epoch, EMA)", pct(s.get("val_AP50_best"))),
        ("test AP / AP50", f"{pct(s.get('test_AP'))} / {pct(s.get('test_AP50'))}"),
        ("shifted domains mAP (COCO-O style)", num(s.get("coco_o_mAP"), "{:.1f}")),
        ("effective robustness ER", num(s.get("coco_o_ER"), "{:+.1f}")),
        ("corruptions mPC / rPC", f"{num(s.get('coco_c_mPC'), '{:.1f}')} / {num(s.get('coco_c_rPC'), '{:.2f}')}"),
        ("test D-ECE raw / calibrated", f"{pct(s.get('D-ECE_before'))} / {pct(s.get('D-ECE_after'))}"),
        ("test LaECE_0 raw / calibrated", f"{pct(s.get('LaECE0_before'))} / {pct(s.get('LaECE0_after'))}"),
        ("test AP raw / calibrated", f"{pct(s.get('AP_raw'))} / {pct(s.get('AP_calibrated'))}"),
        ("test AP of the ONNX model (calibrator inside)", pct(s.get("onnx_test_AP"))),
        (
            "export parity max |Δ| scores / boxes px",
            f"{num(s.get('export_max_abs_diff_scores'))} / {num(s.get('export_max_abs_diff_boxes_px'))}",
        ),
        ("ONNX latency, batch 1 (ms)", num(s.get("onnx_latency_ms_b1"), "{:.1f}")),
        ("total wall time (min)", f"{result.timings.get('total', 0) / 60:.1f}"),
    ]
