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
        ax.axhline(coco_o["er_slope"] * clean, color="grey", linestyle=":", label=f"ER baseline {coco_o['er_slope']} x clean")
        drop = coco_o.get("relative_drop")
        title = f"COCO-O: ER {coco_o['effective_robustness']:+.1f}" + (f", drop {drop:.1f} %" if drop is not None else "")
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
