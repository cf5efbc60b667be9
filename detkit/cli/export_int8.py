"""``detkit export onnx MODEL --int8 --calib-data D``: rendering of the INT8 export target (the work is in
``detkit.export.targets.int8.export_int8``, run through the target table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detkit.cli.ui import UI
from detkit.errors import DetkitError


def export_int8_command(
    ui: UI, model: str, out: Path | None, int8: bool, int8_options: dict[str, Any], export_options: dict[str, Any]
) -> None:
    from detkit.export.targets import export_model, export_target

    if not int8:
        raise DetkitError("--calib-data only applies to an INT8 export", hint="add --int8, or leave --calib-data out")
    if int8_options["calib_data"] is None:
        raise DetkitError(
            "--int8 needs calibration images", hint="add --calib-data DATASET (a dataset.yaml with a 'calib' split)"
        )
    out = out or Path(export_target("int8").default_out)
    ui.print(
        f"exporting [bold]{model}[/] to INT8 ONNX (fp32 graph verified first, then calibrated on split "
        f"'{int8_options['calib_split']}' with {int8_options['method']}) ..."
    )
    with ui.progress():
        result = export_model(model, "int8", out, **int8_options, **export_options)
    for w in result.warnings:
        ui.warn(w)
    acc, rep, meta = result.accuracy, result.report, result.metadata
    rows = [
        (
            "input",
            f"uint8 [{'N' if meta['dynamic_batch'] else 1},3,{meta['imgsz'][0]},{meta['imgsz'][1]}]"
            " + orig_sizes (w, h)",
        ),
        ("classes", str(meta["num_classes"])),
        ("opset / precision", f"{meta['opset']} / int8 (QDQ, per-channel weights, {rep.method} calibration)"),
        ("calibration", f"{rep.calibration['images']} images of split '{rep.calibration['split']}'"),
        ("quantized / float nodes", f"{rep.quantized_nodes} / {rep.float_nodes} ({', '.join(rep.op_types)})"),
        ("float groups (measured)", ", ".join(rep.float_groups) or "none"),
        ("calibrator", (meta["calibrator"]["method"] + " (float)") if meta["calibrator"] else "none"),
        (
            f"AP on '{acc['split']}' fp32 → int8",
            f"{100 * acc['fp32']['AP']:.2f} → {100 * acc['int8']['AP']:.2f} "
            f"(Δ {-acc['ap_drop']:+.2f} points, bound −{acc['max_ap_drop']:g})",
        ),
        ("AP50 fp32 → int8", f"{100 * acc['fp32']['AP50']:.2f} → {100 * acc['int8']['AP50']:.2f}"),
    ]
    if result.fp32_parity is not None:
        p = result.fp32_parity
        rows.append(
            (
                "fp32 graph vs PyTorch",
                f"max |Δscore| {p.max_abs_diff_scores:.1e}, max |Δbox| {p.max_abs_diff_boxes:.1e} (normalised)",
            )
        )
    ui.table("INT8 ONNX export", ["", "value"], rows)
    if rep.sensitivity:
        ui.table(
            "sensitivity on the calibration images (each group quantized alone)",
            ["group", "nodes", "AP drop (points)", "score error"],
            [(s.group, s.nodes, f"{s.ap_drop:.2f}", f"{s.score_error:.1e}") for s in rep.sensitivity[:8]],
        )
    ui.artifacts("model", result.model_path)
    ui.artifacts("metadata", result.metadata_path)
    ui.emit_json(
        {
            "model": str(result.model_path),
            "metadata": str(result.metadata_path),
            "accuracy": acc,
            "int8": meta["int8"],
            "warnings": result.warnings,
        }
    )
