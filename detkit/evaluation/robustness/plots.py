"""Robustness plots (matplotlib, Agg): COCO-O per-domain bars and the COCO-C corruption x severity heat-map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detkit.utils.figures import new_figure, save_figure


def plot_coco_o(coco_o: dict[str, Any], path: str | Path) -> Path:
    """Bars of AP per domain, with the clean AP, mAP_O and the ER baseline (0.45 x clean) as lines."""
    names = list(coco_o["domains"])
    aps = [coco_o["domains"][n]["AP"] for n in names]
    fig = new_figure(max(5.0, 0.9 * len(names) + 2.5), 3.8)
    ax = fig.add_subplot()
    bars = ax.bar(names, aps, color="#4C72B0")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.axhline(coco_o["mAP_O"], color="#DD8452", linestyle="-", label=f"mAP_O {coco_o['mAP_O']:.1f}")
    clean = coco_o.get("clean_AP")
    if clean is not None:
        ax.axhline(clean, color="#55A868", linestyle="--", label=f"clean AP {clean:.1f}")
        ax.axhline(
            coco_o["er_slope"] * clean, color="grey", linestyle=":", label=f"ER baseline {coco_o['er_slope']} x clean"
        )
        drop = coco_o.get("relative_drop")
        title = f"COCO-O: ER {coco_o['effective_robustness']:+.1f}" + (
            f", drop {drop:.1f} %" if drop is not None else ""
        )
        ax.set_title(title, fontsize=10)
    else:
        ax.set_title("COCO-O per-domain AP", fontsize=10)
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, max([*aps, clean or 0, 1.0]) * 1.18)
    ax.legend(fontsize=7, loc="upper right")
    return save_figure(fig, path, dpi=120)


def plot_coco_c(coco_c: dict[str, Any], path: str | Path) -> Path:
    """Heat-map of AP (corruption rows x severity columns), with the clean AP as a first column if known."""
    corruptions, severities = coco_c["corruptions"], coco_c["severities"]
    grid = np.asarray([[coco_c["AP"][c][str(s)] for s in severities] for c in corruptions], dtype=np.float64)
    columns = [f"s{s}" for s in severities]
    clean = coco_c.get("clean_AP")
    if clean is not None:
        grid = np.concatenate([np.full((len(corruptions), 1), clean), grid], axis=1)
        columns = ["clean", *columns]
    vmax = max(float(np.nanmax(grid)), 1e-6)
    fig = new_figure(1.0 * len(columns) + 3.2, 0.38 * len(corruptions) + 1.6)
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(corruptions)), corruptions, fontsize=8)
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 * vmax else "black")
    rpc = coco_c.get("rPC")
    title = f"COCO-C AP (%): mPC {coco_c['mPC']:.1f}" + (f", rPC {rpc:.1f} %" if rpc is not None else "")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="AP (%)")
    return save_figure(fig, path, dpi=120)


def calibration_groups(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, {"raw": {...}, "calibrated": {...}}) per bar group: clean, each COCO-O domain, each COCO-C corruption
    (its errors averaged over the severities run)."""
    from detkit.evaluation.robustness.calibration import METRICS

    cal = result.get("calibration") or {}
    groups = []
    if cal.get("clean"):
        groups.append(("clean", cal["clean"]))
    for name, d in ((result.get("coco_o") or {}).get("domains") or {}).items():
        if d.get("calibration"):
            groups.append((name, d["calibration"]))
    for corruption, per in ((result.get("coco_c") or {}).get("calibration") or {}).items():
        entries = list(per.values())
        merged: dict[str, Any] = {}
        for side in ("raw", "calibrated"):
            if all(e.get(side) for e in entries) and entries:
                merged[side] = {m: _mean([e[side][m] for e in entries]) for m in METRICS}
            else:
                merged[side] = None
        groups.append((corruption, merged))
    return groups


def _mean(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def plot_calibration_shift(result: dict[str, Any], path: str | Path) -> Path | None:
    """Grouped bars, raw vs calibrated, of D-ECE and LaECE_0 (percent) for the clean split, every COCO-O domain
    and every COCO-C corruption (mean over its severities); ``None`` when there is nothing to draw."""
    groups = calibration_groups(result)
    if not groups:
        return None
    names = [g for g, _ in groups]
    has_cal = any(e.get("calibrated") for _, e in groups)
    x = np.arange(len(names))
    width = 0.38 if has_cal else 0.6
    fig = new_figure(max(6.0, 0.62 * len(names) + 2.0), 5.6)
    axes = [fig.add_subplot(2, 1, k + 1) for k in range(2)]
    for ax, (metric, label) in zip(axes, (("d_ece", "D-ECE (%)"), ("la_ece_0", "LaECE_0 (%)"))):
        raw = np.asarray([_pct(e["raw"], metric) for _, e in groups])
        offset = -width / 2 if has_cal else 0.0
        bars = ax.bar(x + offset, raw, width, color="#C44E52", label="raw")
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
        top = np.nanmax(raw) if np.isfinite(raw).any() else 1.0
        if has_cal:
            cal = np.asarray([_pct(e.get("calibrated"), metric) for _, e in groups])
            bars = ax.bar(x + width / 2, cal, width, color="#4C72B0", label="calibrated")
            ax.bar_label(bars, fmt="%.1f", fontsize=6)
            top = max(top, np.nanmax(cal) if np.isfinite(cal).any() else 0.0)
        ax.set_ylabel(label)
        ax.set_ylim(0, max(top, 1.0) * 1.4)  # head room for the legend
        ax.set_xticks(x, names if ax is axes[-1] else [""] * len(names), rotation=30, ha="right", fontsize=8)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    axes[0].set_title(
        "Calibration under shift: clean split, COCO-O domains, COCO-C corruptions (lower is better)", fontsize=9
    )
    return save_figure(fig, path, dpi=120)


def _pct(entry: dict[str, Any] | None, metric: str) -> float:
    if not entry or entry.get(metric) is None:
        return float("nan")
    return 100.0 * float(entry[metric])
