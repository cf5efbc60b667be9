"""``report.md``: the page a person reads first after ``detkit eval``.

Plain Markdown (renders on GitHub, in VS Code, in a terminal pager): what was evaluated, the headline numbers
with what they mean, a per-class table with the weakest classes called out, links to the plots, and the
robustness and calibration sections when those were requested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.utils.atomic import atomic_write_text

HEADLINE_MEANING = (
    ("AP", "COCO AP: precision averaged over recall and over IoU thresholds 0.50:0.05:0.95 (the primary metric)"),
    ("AP50", "AP at IoU 0.50 (PASCAL VOC style, forgiving on localisation)"),
    ("AP75", "AP at IoU 0.75 (strict localisation)"),
    ("APs", "AP on small objects (area < 32² px)"),
    ("APm", "AP on medium objects (32² to 96² px)"),
    ("APl", "AP on large objects (area > 96² px)"),
    ("AR1", "recall with at most 1 detection per image"),
    ("AR10", "recall with at most 10 detections per image"),
    ("AR100", "recall with at most 100 detections per image"),
)


def pct(v: Any, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage (COCO tables use percent), 'n/a' when undefined."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{100 * float(v):.{digits}f}"


def num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return f"{float(v):.{digits}g}" if abs(float(v)) >= 1e4 else f"{float(v):.{digits}f}"


def md_table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return lines


def _header(provenance: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    lines = ["# Evaluation report", ""]
    rows = [
        ["model", f"`{provenance['model']}`"],
        ["dataset", f"`{provenance['dataset']}`"],
        ["split", f"`{provenance['split']}` ({metrics['num_images']} images, {metrics['num_gt']} ground-truth boxes)"],
        ["detections", str(metrics["num_detections"])],
        ["calibrator", f"`{provenance['calibrator']}`" if provenance.get("calibrator") else "none (raw model scores)"],
        *(
            [
                [
                    "sliced inference",
                    "{slice_hw[0]}×{slice_hw[1]} tiles, overlap {overlap:g}, {merge} merge, plus the full image".format(
                        **provenance["slicing"]
                    ),
                ]
            ]
            if provenance.get("slicing")
            else []
        ),
        ["detkit", f"{provenance['detkit_version']}, {provenance['created']}"],
    ]
    lines += md_table(["", ""], rows)
    return lines


def _headline(metrics: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Headline metrics",
        "",
        f"**AP {pct(metrics['AP'])}**, AP50 {pct(metrics['AP50'])}, AP75 {pct(metrics['AP75'])} "
        "(percent; COCO protocol, computed with faster-coco-eval, identical to pycocotools).",
        "",
    ]
    lines += md_table(
        ["metric", "value", "meaning"], [[k, pct(metrics.get(k)), meaning] for k, meaning in HEADLINE_MEANING]
    )
    lines += ["", "`n/a` means the split has no ground truth of that kind (e.g. no small objects)."]
    return lines


def _per_class(metrics: dict[str, Any]) -> list[str]:
    entries = metrics["per_class"]
    lines = ["", "## Per class", ""]
    rows = [[e["name"], e["category_id"], e["num_gt"], pct(e["AP"]), pct(e["AP50"]), pct(e["AP75"])] for e in entries]
    lines += md_table(["class", "category id", "GT boxes", "AP", "AP50", "AP75"], rows)
    scored = [e for e in entries if e["AP"] is not None]
    if len(scored) >= 2:
        worst = sorted(scored, key=lambda e: e["AP"])[: min(3, len(scored) - 1)]
        lines += [
            "",
            "Weakest classes: "
            + ", ".join(f"**{e['name']}** (AP {pct(e['AP'])}, {e['num_gt']} boxes)" for e in worst)
            + ". Look at their PR curves and their row of the confusion matrix first.",
        ]
    missing = [e["name"] for e in entries if e["num_gt"] == 0]
    if missing:
        lines += ["", f"No ground truth in this split for: {', '.join(missing)} (their AP is undefined)."]
    return lines


def _confusion(cm: np.ndarray, class_map: ClassMap) -> list[str]:
    k = len(class_map)
    tp = int(np.trace(cm[:k, :k]))
    confused = int(cm[:k, :k].sum() - tp)
    fp_bg = int(cm[k, :k].sum())
    fn = int(cm[:k, k].sum())
    lines = [
        "",
        "## Plots",
        "",
        "- [Precision-recall, mean over classes](plots/pr_overall.png): how precision falls as the score threshold is "
        "lowered to find more objects; the area under each curve is the AP at that IoU.",
        "- [Precision-recall per class](plots/pr_per_class.png)",
        "- [Confusion matrix](plots/confusion_matrix.png): detections with score >= 0.3 matched to ground truth "
        "at IoU 0.5 regardless of class; rows are the true class, columns the predicted one, the last row/column "
        "is background (false positives / missed objects).",
        "",
        f"At score >= 0.3 and IoU 0.5: {tp} correct detections, {confused} boxes found with the wrong class, "
        f"{fp_bg} false positives on background, {fn} objects missed.",
    ]
    off = cm[:k, :k].copy()
    np.fill_diagonal(off, 0)
    if off.max() > 0:
        i, j = np.unravel_index(int(np.argmax(off)), off.shape)
        lines += [
            f"Most frequent confusion: true **{class_map.names[i]}** predicted as **{class_map.names[j]}** "
            f"({int(off[i, j])} boxes)."
        ]
    return lines


def _files(robustness: bool, calibration: bool) -> list[str]:
    lines = [
        "",
        "## Files",
        "",
        "- `predictions.json`: all detections in COCO results format (original category ids); "
        "re-evaluate with `detkit eval --predictions predictions.json --data DATASET`.",
        "- `metrics.json`: every number of this report, with the confusion matrix counts.",
    ]
    if robustness:
        lines.append("- `robustness.json`: per-domain and per-corruption results.")
    if calibration:
        lines.append("- `calibration.json`: calibration errors with the bins, IoU rule and score threshold of each.")
    lines += [
        "",
        "Look at the failures box by box: `detkit view <this folder>` opens the split in the FiftyOne App with every "
        "box tagged tp / fp / fn (needs the `fiftyone` extra).",
    ]
    return lines


def render_report(
    provenance: dict[str, Any],
    metrics: dict[str, Any],
    cm: np.ndarray,
    class_map: ClassMap,
    robustness_lines: list[str] | None = None,
    calibration_lines: list[str] | None = None,
    warnings: list[str] | None = None,
    gallery_lines: list[str] | None = None,
) -> str:
    lines = _header(provenance, metrics)
    if warnings:
        lines += ["", "> **Warnings**", *[f"> - {w}" for w in warnings]]
    lines += _headline(metrics)
    lines += _per_class(metrics)
    lines += _confusion(cm, class_map)
    if gallery_lines:
        lines += ["", *gallery_lines]
    if robustness_lines:
        lines += ["", *robustness_lines]
    if calibration_lines:
        lines += ["", *calibration_lines]
    lines += _files(bool(robustness_lines), bool(calibration_lines))
    return "\n".join(lines) + "\n"


def write_report(path: Path, *args: Any, **kwargs: Any) -> Path:
    return atomic_write_text(path, render_report(*args, **kwargs))


CALIBRATION_MEANING = {
    "d_ece": (
        "gap between confidence and precision, detections pooled over classes "
        "(0 = a score of 0.7 is right 70 % of the time)"
    ),
    "d_ece_classwise": "the same per class, averaged over classes",
    "d_ece_box": "the same, binned also by box position and size (miscalibration that depends on where and how large)",
    "la_ece": "localisation-aware: gap between confidence and the IoU a detection reaches (0 for false positives)",
    "la_ece_0": "localisation-aware ECE with every overlap counting (IoU > 0), the calibration seed paper's measure",
    "la_ace_0": "mean |confidence - IoU target| per detection (no binning)",
    "lrp_0": (
        "LRP error at the operating point (localisation, false positives and misses in one number; lower is better)"
    ),
    "lrp_50": "LRP error with matches at IoU 0.5",
}


def calibration_section(report: dict[str, Any], diagrams: list[str]) -> list[str]:
    """The ``## Calibration`` section for a calibration report (metric values are fractions; shown in percent)."""
    lines = [
        "## Calibration",
        "",
        "A detector is calibrated when its scores mean what they say: among detections scored 0.8, 80 % are correct "
        "(or, for the localisation-aware errors, reach an IoU of 0.8 on average). Calibrated scores make one "
        "threshold meaningful across classes and let downstream code treat scores as probabilities. All errors "
        "below are in percent; 0 is perfect.",
        "",
    ]
    rows = []
    for key, m in report["metrics"].items():
        value = m.get("value")
        rows.append([key, pct(value, 2), m.get("name", key), CALIBRATION_MEANING.get(key, "")])
    lines += md_table(["metric", "error %", "protocol", "what it measures"], rows)
    olrp = report["metrics"].get("lrp_0", {}).get("olrp")
    if olrp is not None:
        lines += ["", f"Optimal LRP (best threshold per class): {pct(olrp, 2)} %."]
    rc = report.get("raw_vs_calibrated")
    if rc and rc.get("calibrated"):
        lines += [
            "",
            "The scores above are calibrated. The same detections with the model's raw scores and with the "
            "calibrator's (percent; LaECE_0 at the calibrator's operating point, "
            f"{rc['num_operating']} of {rc['num_detections']} detections):",
            "",
        ]
        lines += md_table(
            ["metric", "raw", "calibrated"],
            [[k, pct(rc["raw"][k], 2), pct(rc["calibrated"][k], 2)] for k in ("d_ece", "la_ece_0")],
        )
    skipped = report.get("classes_skipped_without_gt") or []
    if skipped:
        lines += ["", f"Classes without ground truth, left out: {', '.join(skipped)}."]
    lines += [
        "",
        "Each metric's bins, IoU rule and score threshold are recorded in `calibration.json`. "
        "Fit a calibrator with `detkit calibrate` and evaluate again with `--calibrator` to compare.",
    ]
    for d in diagrams:
        what = "per-class reliability diagrams" if d.endswith("_per_class.png") else "reliability diagram"
        lines += ["", f"![{what}]({d})"]
    return lines


def failure_gallery_section(gallery: Any) -> list[str]:
    """The ``## Failure gallery`` section for a :class:`detkit.explain.gallery.Gallery`."""
    lines = [
        "## Failure gallery",
        "",
        f"At score >= {gallery.score_threshold:g} and IoU {gallery.iou_threshold:g} "
        f"(same matching as COCO, class-aware): {gallery.num_fp} false positives, {gallery.num_missed} missed objects. "
        "The worst of each, as crops "
        "(red: the detection, green: the missed ground truth)"
        + (
            f", with the map of what the detection rests on (`{gallery.method}` method; `detkit explain` "
            "draws it for whole images)."
            if gallery.method
            else "; no explanation maps (they need a PyTorch model)."
        ),
    ]
    fps = [it for it in gallery.items if it.kind == "fp"]
    if fps:
        lines += ["", "### Worst false positives (highest-scoring unmatched detections)", ""]
        if "fp" in gallery.figures:
            lines += [f"![worst false positives]({gallery.figures['fp']})", ""]
        rows = [
            [
                i + 1,
                f"`{it.file_name}`",
                it.class_name,
                num(it.score, 2),
                ", ".join(f"{v:g}" for v in it.box),
                pct(it.mass_inside, 0),
            ]
            for i, it in enumerate(fps)
        ]
        lines += md_table(["#", "image", "class", "score", "box x, y, w, h", "map % in box"], rows)
    missed = [it for it in gallery.items if it.kind == "missed"]
    if missed:
        lines += ["", "### Missed objects (largest first), with the detection that overlaps each most", ""]
        if "missed" in gallery.figures:
            lines += [f"![missed objects]({gallery.figures['missed']})", ""]
        rows = [
            [
                i + 1,
                f"`{it.file_name}`",
                it.class_name,
                ", ".join(f"{v:g}" for v in it.box),
                f"{it.detection_class} {num(it.score, 2)} (IoU {num(it.detection_iou, 2)})"
                if it.score is not None
                else "none",
            ]
            for i, it in enumerate(missed)
        ]
        lines += md_table(["#", "image", "true class", "box x, y, w, h", "closest detection"], rows)
        lines += [
            "",
            "A missed object whose closest detection has the right class but a low score is a confidence "
            "problem (lower the threshold, calibrate); a wrong class is a confusion; no overlapping detection "
            "at all means the model never looked there.",
        ]
    if not fps and not missed:
        lines += ["", "No failures at this operating point."]
    return lines
