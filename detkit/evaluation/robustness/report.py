"""The robustness section of ``report.md``: the numbers with a plain explanation of what they mean."""

from __future__ import annotations

from typing import Any


def _f(v: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _coco_o_section(o: dict[str, Any], plot: str | None) -> list[str]:
    lines = [
        "### COCO-O (natural distribution shift)",
        "",
        "The detector ran unchanged on each domain of the COCO-O layout found under "
        f"`{o['root']}`; each domain is a separate COCO evaluation (AP@[.5:.95], 100 detections per image).",
        "",
        "| domain | images | boxes | AP | AP50 | drop vs clean |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, d in o["domains"].items():
        lines.append(
            f"| {name} | {d['images']} | {d['boxes']} | {_f(d['AP'])} | {_f(d['AP50'])} | {_f(d['relative_drop'])} % |"
        )
    lines += [
        "",
        f"- **mAP_O = {_f(o['mAP_O'])}**: the unweighted mean of the {len(o['domains'])} domain APs "
        f"(clean AP {_f(o['clean_AP'])}).",
        f"- **Relative drop = {_f(o['relative_drop'])} %**: the share of the clean AP lost, (clean − mAP_O) / clean.",
        f"- **Effective robustness ER = {_f(o['effective_robustness'], '{:+.1f}')}**: "
        f"mAP_O − {o['er_slope']} × clean AP. "
        "COCO-O's classic detectors lie on the line mAP_O = 0.45 × clean AP, so ER > 0 means more robust than the "
        "clean accuracy predicts, ER < 0 less (published: Faster R-CNN R50 ≈ −0.3, DETR R50 ≈ −1.8, FIBER-B ≈ +11.5).",
    ]
    if o["matches_coco_o_totals"]:
        lines.append("- The domains hold exactly the published COCO-O totals (6,782 images, 26,624 boxes).")
    if o["missing_coco_o_domains"] and len(o["missing_coco_o_domains"]) < 6:
        lines.append(
            f"- Missing COCO-O domains: {', '.join(o['missing_coco_o_domains'])}; "
            "the mean covers the domains found only."
        )
    if plot:
        lines += ["", f"![COCO-O per-domain AP]({plot})"]
    return lines


def _coco_c_section(c: dict[str, Any], plot: str | None) -> list[str]:
    severities = c["severities"]
    lines = [
        "### COCO-C (synthetic corruptions)",
        "",
        f"{len(c['corruptions'])} corruption(s) × severities {', '.join(map(str, severities))} "
        "of the evaluation split, "
        "applied to the original-resolution images before resizing (imagecorruptions definitions, seeded).",
        "",
        "| corruption | " + " | ".join(f"s{s}" for s in severities) + " | mean |",
        "|---|" + "---:|" * (len(severities) + 1),
    ]
    for name in c["corruptions"]:
        cells = " | ".join(_f(c["AP"][name][str(s)]) for s in severities)
        lines.append(f"| {name} | {cells} | {_f(c['mean_AP_per_corruption'][name])} |")
    lines += [
        "",
        f"- **mPC = {_f(c['mPC'])}**: mean AP over every corruption and severity (clean AP P = {_f(c['clean_AP'])}).",
        f"- **rPC = {_f(c['rPC'])} %**: mPC / P, the share of clean performance kept under corruption "
        "(published, MMDetection: Faster R-CNN R50-FPN 50.2 %, HTC X101-DCN 64.7 %).",
    ]
    if not c["complete_benchmark"]:
        lines.append(
            "- This is a subset of the 15 × 5 benchmark, so mPC and rPC are not comparable with published values."
        )
    if plot:
        lines += ["", f"![COCO-C AP heat-map]({plot})"]
    return lines


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _calibration_section(result: dict[str, Any], plot: str | None) -> list[str]:
    from detkit.evaluation.robustness.calibration import calibration_rows

    rows = calibration_rows(result)
    if not rows:
        return []
    cal = result["calibration"]
    settings = cal.get("settings", {})
    lines = ["### Calibration under shift", ""]
    if cal.get("calibrator"):
        lines += [
            "The calibrator fitted on the clean calibration split is applied unchanged to every domain and "
            "corruption: does it still mean what it says when the images change? Errors in percent, lower "
            "is better.",
            "",
            "| set | D-ECE raw | D-ECE calibrated | LaECE_0 raw | LaECE_0 calibrated |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, e in rows:
            c = e.get("calibrated") or {}
            lines.append(
                f"| {name} | {_pct(e['raw']['d_ece'])} | {_pct(c.get('d_ece'))} | "
                f"{_pct(e['raw']['la_ece_0'])} | {_pct(c.get('la_ece_0'))} |"
            )
    else:
        lines += [
            "Calibration errors of the raw scores on every domain and corruption (percent, lower is better); "
            "pass a calibrator (`--calibrator`) to see what it fixes.",
            "",
            "| set | D-ECE | LaECE_0 |",
            "|---|---:|---:|",
        ]
        lines += [f"| {name} | {_pct(e['raw']['d_ece'])} | {_pct(e['raw']['la_ece_0'])} |" for name, e in rows]
    lines += ["", *[f"- {settings[k]}" for k in ("d_ece", "la_ece_0", "calibrator") if k in settings]]
    if plot:
        lines += ["", f"![calibration under shift, raw vs calibrated]({plot})"]
    return lines


def robustness_markdown(result: dict[str, Any]) -> str:
    """The ``## Robustness`` section of ``report.md`` for a :func:`run_robustness` result."""
    plots = result.get("plots", {})
    lines = ["## Robustness", "", "All APs in percent (COCO AP@[.5:.95] × 100)."]
    if result.get("coco_o"):
        lines += [""] + _coco_o_section(result["coco_o"], plots.get("coco_o"))
    if result.get("coco_c"):
        lines += [""] + _coco_c_section(result["coco_c"], plots.get("coco_c"))
    calibration = _calibration_section(result, plots.get("calibration"))
    if calibration:
        lines += [""] + calibration
    if not result.get("coco_o") and not result.get("coco_c"):
        lines += ["", "No robustness suite was run."]
    return "\n".join(lines) + "\n"
