"""Reliability diagrams (PNG, matplotlib Agg) from the bin statistics a calibration metric records.

A diagram has two panels: on top, per confidence bin, the mean target (precision for D-ECE, mean IoU target
for LaECE) as bars, the gap to the bin's mean confidence as a red bar, and the diagonal of perfect
calibration; below, the share of detections per bin. Empty bins are left blank.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detkit.utils.figures import new_figure, save_figure


def _arr(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _draw(ax_top: Any, ax_bottom: Any, metric: dict[str, Any], title: str) -> None:
    rel = metric["reliability"]
    edges = np.asarray(rel["edges"], dtype=np.float64)
    width = np.diff(edges)
    left = edges[:-1]
    target = _arr(rel["mean_target"])
    conf = _arr(rel["mean_confidence"])
    frac = _arr(rel["fraction"])
    shown = np.isfinite(target) & np.isfinite(conf)
    binary = "binary" in str(metric.get("targets", ""))
    label = "precision" if binary else "mean IoU target"
    ax_top.bar(left[shown], target[shown], width=width[shown], align="edge", color="#3b75af", edgecolor="white",
               linewidth=0.5, label=label)
    gap_lo = np.minimum(target, conf)[shown]
    ax_top.bar(left[shown], np.abs(conf - target)[shown], bottom=gap_lo, width=width[shown], align="edge",
               color="#d62728", alpha=0.35, edgecolor="#d62728", linewidth=0.5, label="gap to confidence")
    ax_top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    ax_top.set_xlim(0, 1)
    ax_top.set_ylim(0, 1)
    ax_top.set_ylabel(label[0].upper() + label[1:])
    value = metric.get("value")
    text = "n/a" if value is None else f"{100 * value:.1f}%"
    ax_top.set_title(f"{title}\n{metric.get('name', '')}: {text}", fontsize=9)
    ax_top.legend(loc="upper left", fontsize=7)
    ax_bottom.bar(left, np.nan_to_num(frac), width=width, align="edge", color="#8c8c8c")
    ax_bottom.set_xlim(0, 1)
    ax_bottom.set_xlabel("Confidence")
    ax_bottom.set_ylabel("Share", fontsize=8)


def plot_reliability(metrics: Sequence[dict[str, Any]], titles: Sequence[str], path: str | Path) -> Path:
    """One column per metric result (e.g. before / after calibration), written atomically as PNG."""
    if not metrics or len(metrics) != len(titles):
        raise ValueError("need one title per metric result")
    fig = new_figure(4.2 * len(metrics), 5.2)
    grid = fig.add_gridspec(2, len(metrics), height_ratios=(3, 1), left=0.1 / len(metrics) + 0.03, right=0.98,
                            bottom=0.09, top=0.9, hspace=0.25, wspace=0.3)
    for k, (metric, title) in enumerate(zip(metrics, titles)):
        top = fig.add_subplot(grid[0, k])
        bottom = fig.add_subplot(grid[1, k], sharex=top)
        _draw(top, bottom, metric, title)
    return save_figure(fig, path)


def save_reliability_diagrams(report: dict[str, Any], out_dir: str | Path, prefix: str = "reliability") -> list[Path]:
    """Diagrams of a :func:`~detkit.evaluation.calibration_metrics.calibration_report`: D-ECE and LaECE_0."""
    out_dir = Path(out_dir)
    paths = []
    for key in ("d_ece", "la_ece_0"):
        metric = report["metrics"].get(key)
        if metric is not None and "reliability" in metric:
            paths.append(plot_reliability([metric], [key], out_dir / f"{prefix}_{key}.png"))
    return paths


def save_before_after(before: dict[str, Any], after: dict[str, Any], out_dir: str | Path, prefix: str = "reliability") -> list[Path]:
    """Before/after diagrams of two calibration reports, side by side, one PNG per metric."""
    out_dir = Path(out_dir)
    paths = []
    for key in ("d_ece", "la_ece_0"):
        b, a = before["metrics"].get(key), after["metrics"].get(key)
        if b is not None and a is not None:
            paths.append(plot_reliability([b, a], ["before calibration", "after calibration"], out_dir / f"{prefix}_{key}.png"))
    return paths
