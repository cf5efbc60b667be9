"""``detkit eval``: COCO metrics, plots and report of a model or a predictions file on a dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from detkit.cli.slicing_options import overlap_option, slice_option, slicing_flag_hints, slicing_kwargs
from detkit.cli.ui import UI
from detkit.errors import DetkitError


def _csv(value: str | None, what: str, cast: type = str) -> list | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise DetkitError(f"{what} is empty", hint=f"give a comma-separated list, e.g. {what} a,b")
    try:
        return [cast(v) for v in items]
    except ValueError:
        raise DetkitError(
            f"{what} must be a comma-separated list of integers, got {value!r}", hint=f"e.g. {what} 1,3,5"
        ) from None


def eval_command(
    model: str = typer.Argument(
        None,
        help=(
            "Run dir, checkpoint (.pt), model.onnx, bare official RT-DETR .pth / Hugging Face .safetensors "
            "(classes from --data), or recipe:NAME with --weights. Leave out with --predictions."
        ),
        show_default=False,
    ),
    weights: Path = typer.Option(
        None,
        "--weights",
        help=(
            "Weights for a recipe:NAME / recipe.yaml MODEL: detkit checkpoint, official RT-DETR .pth or "
            "Hugging Face .safetensors."
        ),
    ),
    data: Path = typer.Option(..., "--data", help="dataset.yaml (or its folder)."),
    split: str = typer.Option("val", "--split", help="Split to evaluate."),
    predictions: Path = typer.Option(
        None, "--predictions", help="Evaluate a COCO results file instead of running a model."
    ),
    robustness: bool = typer.Option(
        False, "--robustness", help="Also measure robustness: COCO-C corruptions of the split and COCO-O domains."
    ),
    coco_o: Path = typer.Option(None, "--coco-o", help="COCO-O root (domain folders with val2017/ and annotations/)."),
    corruptions: str = typer.Option(
        None,
        "--corruptions",
        help=(
            "Subset of COCO-C corruptions or groups (noise, blur, weather, digital), comma-separated "
            "(default: all 15; 'none' for COCO-O only)."
        ),
    ),
    severities: str = typer.Option(
        None, "--severities", help="Subset of severities 1-5, comma-separated (default: all)."
    ),
    cache_dir: Path = typer.Option(
        None, "--cache-dir", help="Where corrupted images are cached (default: ~/.cache/detkit/coco_c)."
    ),
    calibration: bool = typer.Option(
        False, "--calibration", help="Also measure calibration (D-ECE, LaECE, ...) and draw reliability diagrams."
    ),
    calibrator: Path = typer.Option(
        None, "--calibrator", help="calibrator.json applied to every score before evaluating."
    ),
    batch: int = typer.Option(8, "--batch", min=1, help="Inference batch size."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: the model's choice)."),
    slice_hw: tuple[int, int] = slice_option(),
    overlap: float = overlap_option(),
    out: Path = typer.Option(None, "--out", help="Parent folder of the eval dir (default: runs/eval)."),
    name: str = typer.Option(None, "--name", help="Eval dir name, auto-incremented if taken (default: eval)."),
    backend: str = typer.Option(
        None,
        "--backend",
        help="Runtime of an exported .onnx MODEL: onnxruntime or openvino (extra 'detkit[openvino]') "
        "[default: onnxruntime].",
    ),
    json_mode: bool = typer.Option(False, "--json", help="Print one JSON object with the results on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="Only warnings and errors."),
) -> None:
    """Evaluate a model (or a predictions file) on a dataset split: COCO metrics, PR curves, confusion matrix, report.md."""  # noqa: E501 (one-line help in `detkit --help`)
    from detkit.stages.evaluate import evaluate

    ui = UI(json_mode, quiet)
    if slice_hw is not None and predictions is not None:
        raise DetkitError("--slice runs the model on tiles; it does not apply to --predictions", hint="drop --slice")
    slicing = slicing_kwargs(slice_hw, overlap)
    with ui.progress(), slicing_flag_hints():
        result = evaluate(
            model,
            data,
            split=split,
            predictions=predictions,
            robustness=robustness,
            coco_o=coco_o,
            corruptions=_csv(corruptions, "--corruptions"),
            severities=_csv(severities, "--severities", int),
            calibration=calibration,
            calibrator=calibrator,
            out=out,
            name=name,
            batch_size=batch,
            device=device,
            cache_dir=cache_dir,
            weights=weights,
            backend=backend,
            **slicing,
        )
    for w in result.warnings:
        ui.warn(w)
    m = result.metrics
    ui.table(
        f"COCO metrics, split '{split}' ({m['num_images']} images, {m['num_detections']} detections), percent",
        ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"],
        [[_pct(m[k]) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")]],
    )
    if len(m["per_class"]) <= 30:
        ui.table(
            "Per class",
            ["class", "GT boxes", "AP", "AP50"],
            [[c["name"], c["num_gt"], _pct(c["AP"]), _pct(c["AP50"])] for c in m["per_class"]],
        )
    for label, rows in summary_rows(result):
        ui.table(label, ["metric", "value"], rows)
    ui.artifacts("eval dir", result.dir)
    ui.artifacts("report", result.dir / "report.md")
    ui.emit_json(result.summary())


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def summary_rows(result: Any) -> list[tuple[str, list[list[str]]]]:
    """(title, [[metric, value]]) tables of the robustness and calibration headline numbers for the terminal."""
    from detkit.evaluation.calibration_metrics import summary_values
    from detkit.evaluation.robustness.calibration import calibration_rows

    tables = []
    r = result.robustness
    if r is not None:
        rows = []
        if r.get("coco_o"):
            o = r["coco_o"]
            rows += [[f"COCO-O AP {d}", _fmt(v["AP"])] for d, v in o["domains"].items()]
            rows += [
                ["COCO-O mAP_O", _fmt(o["mAP_O"])],
                ["relative drop %", _fmt(o["relative_drop"])],
                ["effective robustness", _fmt(o["effective_robustness"])],
            ]
        if r.get("coco_c"):
            c = r["coco_c"]
            rows += [["COCO-C mPC", _fmt(c["mPC"])], ["COCO-C rPC %", _fmt(c["rPC"])]]
        tables.append(("Robustness (AP in percent)", rows))
    if result.calibration is not None:
        values = summary_values(result.calibration)
        tables.append(
            (
                "Calibration (lower is better, percent)",
                [[k, _fmt(None if v is None else 100 * v)] for k, v in values.items()],
            )
        )
        rc = result.calibration.get("raw_vs_calibrated")
        if rc and rc.get("calibrated"):
            tables.append(
                (
                    "Calibrator: raw → calibrated (percent)",
                    [
                        [k, f"{_fmt(_pc(rc['raw'][k]))} → {_fmt(_pc(rc['calibrated'][k]))}"]
                        for k in ("d_ece", "la_ece_0")
                    ],
                )
            )
    if r is not None and r.get("calibration"):
        rows = []
        for name, e in calibration_rows(r):
            c = e.get("calibrated") or {}
            raw = e["raw"]
            cell = (
                (lambda k, raw=raw, c=c: f"{_fmt(_pc(raw[k]))} → {_fmt(_pc(c.get(k)))}")
                if c
                else (lambda k, raw=raw: _fmt(_pc(raw[k])))
            )
            rows.append([name, cell("d_ece"), cell("la_ece_0")])
        if rows:
            unit = ", raw → calibrated)" if r["calibration"].get("calibrator") else ")"
            tables.append(
                (f"Calibration under shift, D-ECE | LaECE_0 (percent{unit}", [[n, f"{a} | {b}"] for n, a, b in rows])
            )
    return tables


def _pc(v: Any) -> float | None:
    return None if v is None else 100.0 * float(v)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}" if isinstance(v, float) else str(v)
