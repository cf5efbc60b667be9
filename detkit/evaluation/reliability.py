"""Reliability diagrams (PNG, matplotlib Agg) from the bin statistics a calibration metric records.

A diagram has two panels: on top, per confidence bin, the mean target (precision for D-ECE, mean IoU target
for LaECE) as bars, the gap to the bin's mean confidence as a red bar, and the diagonal of perfect
calibration; below, the share of detections per bin. Empty bins are left blank.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detkit.utils.figures import new_figure, save_figure

TITLE_CHARS = 52  # characters per title line at 8 pt in a 4.2-inch panel
PER_CLASS_MAX = 24  # panels in the per-class figure (the classes with the most detections)


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
    ax_top.bar(
        left[shown],
        target[shown],
        width=width[shown],
        align="edge",
        color="#3b75af",
        edgecolor="white",
        linewidth=0.5,
        label=label,
    )
    gap_lo = np.minimum(target, conf)[shown]
    ax_top.bar(
        left[shown],
        np.abs(conf - target)[shown],
        bottom=gap_lo,
        width=width[shown],
        align="edge",
        color="#d62728",
        alpha=0.35,
        edgecolor="#d62728",
        linewidth=0.5,
        label="gap to confidence",
    )
    ax_top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    ax_top.set_xlim(0, 1)
    ax_top.set_ylim(0, 1)
    ax_top.set_ylabel(label[0].upper() + label[1:])
    value = metric.get("value")
    text = "n/a" if value is None else f"{100 * value:.1f}%"
    # wrapped to the panel's width so that a long protocol name is never clipped
    name = textwrap.fill(f"{metric.get('name', '')}: {text}", width=TITLE_CHARS)
    ax_top.set_title(f"{title}\n{name}", fontsize=8)
    ax_top.legend(loc="upper left", fontsize=7)
    ax_bottom.bar(left, np.nan_to_num(frac), width=width, align="edge", color="#8c8c8c")
    ax_bottom.set_xlim(0, 1)
    ax_bottom.set_xlabel("Confidence")
    ax_bottom.set_ylabel("Share", fontsize=8)


def plot_reliability(metrics: Sequence[dict[str, Any]], titles: Sequence[str], path: str | Path) -> Path:
    """One column per metric result (e.g. before / after calibration), written atomically as PNG."""
    if not metrics or len(metrics) != len(titles):
        raise ValueError("need one title per metric result")
    fig = new_figure(4.2 * len(metrics), 5.6, layout="constrained")  # constrained: titles and ticks never clipped
    grid = fig.add_gridspec(2, len(metrics), height_ratios=(3, 1))
    for k, (metric, title) in enumerate(zip(metrics, titles)):
        top = fig.add_subplot(grid[0, k])
        bottom = fig.add_subplot(grid[1, k], sharex=top)
        _draw(top, bottom, metric, title)
    return save_figure(fig, path)


def plot_reliability_per_class(metric: dict[str, Any], path: str | Path, title: str = "") -> Path | None:
    """One small reliability diagram per class (mean target per confidence bin, the gap to confidence, the
    diagonal) from a metric whose reliability holds ``per_class`` bins (LaECE_0); ``None`` without classes."""
    per_class = (metric.get("reliability") or {}).get("per_class") or {}
    if not per_class:
        return None
    ranked = sorted(per_class.items(), key=lambda kv: -sum(kv[1]["count"]))
    shown = ranked[:PER_CLASS_MAX]
    edges = np.asarray(metric["reliability"]["edges"], dtype=np.float64)
    cols = min(4, len(shown))
    rows = (len(shown) + cols - 1) // cols
    fig = new_figure(2.4 * cols, 2.3 * rows + 0.6, layout="constrained")
    values = metric.get("per_class") or {}
    for k, (name, rel) in enumerate(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        target, conf = _arr(rel["mean_target"]), _arr(rel["mean_confidence"])
        ok = np.isfinite(target) & np.isfinite(conf)
        left, width = edges[:-1][ok], np.diff(edges)[ok]
        ax.bar(left, target[ok], width=width, align="edge", color="#3b75af", edgecolor="white", linewidth=0.3)
        ax.bar(
            left,
            np.abs(conf - target)[ok],
            bottom=np.minimum(target, conf)[ok],
            width=width,
            align="edge",
            color="#d62728",
            alpha=0.35,
            linewidth=0,
        )
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
        v = values.get(name)
        label = textwrap.shorten(name, 22, placeholder="…")
        ax.set_title(f"{label}: {'n/a' if v is None else f'{100 * v:.1f}%'} ({sum(rel['count'])} det.)", fontsize=7)
    more = f", {len(shown)} of {len(ranked)} classes (most detections)" if len(ranked) > len(shown) else ""
    heading = f"{title + ': ' if title else ''}{metric.get('name', '')} per class{more}"
    fig.suptitle(
        textwrap.fill(
            heading + " (blue: mean IoU target per confidence bin; red: gap to confidence)", width=int(15 * 2.4 * cols)
        ),
        fontsize=8,
    )
    return save_figure(fig, path)


def save_reliability_diagrams(report: dict[str, Any], out_dir: str | Path, prefix: str = "reliability") -> list[Path]:
    """Diagrams of a :func:`~detkit.evaluation.calibration_metrics.calibration_report`: D-ECE and LaECE_0, and
    LaECE_0 per class."""
    out_dir = Path(out_dir)
    paths = []
    for key in ("d_ece", "la_ece_0"):
        metric = report["metrics"].get(key)
        if metric is not None and "reliability" in metric:
            paths.append(plot_reliability([metric], [key], out_dir / f"{prefix}_{key}.png"))
    metric = report["metrics"].get("la_ece_0")
    if metric is not None:
        per_class = plot_reliability_per_class(metric, out_dir / f"{prefix}_la_ece_0_per_class.png")
        if per_class is not None:
            paths.append(per_class)
    return paths


def save_before_after(
    before: dict[str, Any], after: dict[str, Any], out_dir: str | Path, prefix: str = "reliability"
) -> list[Path]:
    """Before/after diagrams of two calibration reports, side by side, one PNG per metric."""
    out_dir = Path(out_dir)
    paths = []
    for key in ("d_ece", "la_ece_0"):
        b, a = before["metrics"].get(key), after["metrics"].get(key)
        if b is not None and a is not None:
            paths.append(
                plot_reliability([b, a], ["before calibration", "after calibration"], out_dir / f"{prefix}_{key}.png")
            )
    return paths
