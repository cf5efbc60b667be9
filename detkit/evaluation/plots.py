"""Evaluation figures as PNG: precision-recall curves and the confusion matrix.

Figures are drawn on :class:`matplotlib.figure.Figure` objects (the Agg canvas, no pyplot state, no display)
and written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData
from detkit.evaluation.detections import DetectionTable
from detkit.utils.figures import new_figure, save_figure

CONFUSION_IOU = 0.5
CONFUSION_SCORE = 0.3


def _figure(w: float, h: float) -> Any:
    return new_figure(w, h, layout="constrained")


def _curve(precision: np.ndarray) -> np.ndarray:
    """Interpolated precision at each recall point; -1 (no ground truth) shown as a gap."""
    return np.where(precision < 0, np.nan, precision)


def _mean_over_classes(precision: np.ndarray) -> np.ndarray:
    """``[R, K]`` -> ``[R]`` mean over classes with ground truth (NaN if none)."""
    valid = precision >= 0
    counts = valid.sum(axis=-1)
    total = np.where(valid, precision, 0.0).sum(axis=-1)
    return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


def plot_pr_overall(metrics: dict[str, Any], path: Path) -> Path:
    """Mean PR curve over classes at IoU 0.50, 0.75 and averaged over 0.50:0.95."""
    p, rec, ious = metrics["precision"], metrics["recall_thresholds"], metrics["iou_thresholds"]
    fig = _figure(5.5, 4.5)
    ax = fig.add_subplot()
    for label, t in (("IoU 0.50", 0.5), ("IoU 0.75", 0.75)):
        i = int(np.argmin(np.abs(ious - t)))
        ax.plot(rec, _mean_over_classes(p[i]), label=f"{label} (AP {_pct(metrics['AP50' if t == 0.5 else 'AP75'])})")
    ax.plot(
        rec,
        np.nanmean(np.stack([_mean_over_classes(p[i]) for i in range(len(ious))]), axis=0)
        if len(ious)
        else rec * np.nan,
        label=f"IoU 0.50:0.95 (AP {_pct(metrics['AP'])})",
        linestyle="--",
    )
    _pr_axes(ax, "Precision-recall, mean over classes")
    ax.legend(loc="lower left", fontsize=8)
    return save_figure(fig, path)


def plot_pr_per_class(metrics: dict[str, Any], class_map: ClassMap, path: Path) -> Path:
    """One small PR panel per class (IoU 0.50 and 0.75), in model order."""
    p, rec, ious = metrics["precision"], metrics["recall_thresholds"], metrics["iou_thresholds"]
    i50, i75 = int(np.argmin(np.abs(ious - 0.5))), int(np.argmin(np.abs(ious - 0.75)))
    k = len(class_map)
    cols = min(4, k)
    rows = math.ceil(k / cols)
    fig = _figure(3.0 * cols, 2.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for j, entry in enumerate(metrics["per_class"]):
        ax = axes[j // cols][j % cols]
        if entry["num_gt"] == 0:
            ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes, color="grey")
        else:
            ax.plot(rec, _curve(p[i50, :, j]), label="IoU 0.50")
            ax.plot(rec, _curve(p[i75, :, j]), label="IoU 0.75")
        _pr_axes(ax, f"{entry['name']}  AP50 {_pct(entry['AP50'])}", small=True)
        if j == 0:
            ax.legend(loc="lower left", fontsize=7)
    for j in range(k, rows * cols):
        axes[j // cols][j % cols].set_axis_off()
    return save_figure(fig, path)


def _pr_axes(ax: Any, title: str, small: bool = False) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall", fontsize=8 if small else 10)
    ax.set_ylabel("precision", fontsize=8 if small else 10)
    ax.set_title(title, fontsize=9 if small else 11)
    ax.grid(alpha=0.3)
    if small:
        ax.tick_params(labelsize=7)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def confusion_matrix(
    dets: DetectionTable,
    gt: CocoData,
    class_map: ClassMap,
    iou_threshold: float = CONFUSION_IOU,
    score_threshold: float = CONFUSION_SCORE,
) -> np.ndarray:
    """Counts ``[K+1, K+1]``: rows = true class, columns = predicted class, index K = background.

    Detections with score >= ``score_threshold`` are matched to ground truth regardless of class (the shared
    COCO-rule matcher, class-agnostic, crowd ignored) at ``iou_threshold``. A matched pair counts at
    (true class, predicted class); an unmatched detection at (background, predicted); a missed ground-truth
    box at (true class, background).
    """
    from detkit.evaluation.matching import match_detections

    k = len(class_map)
    keep = dets.scores >= score_threshold
    kept = dets.subset(keep)
    m = match_detections(kept, gt, iou_threshold, max_dets=100, class_agnostic=True)
    to_label = class_map.category_to_label()
    gt_label = np.asarray([to_label.get(int(a["category_id"]), -1) for a in gt.annotations], dtype=np.int64)
    pred_label = class_map.category_ids_to_labels(kept.category_ids) if len(kept) else np.zeros(0, np.int64)
    cm = np.zeros((k + 1, k + 1), dtype=np.int64)
    tp = m.tp
    np.add.at(cm, (gt_label[m.gt_index[tp]], pred_label[tp]), 1)
    np.add.at(cm, (np.full(int(m.fp.sum()), k), pred_label[m.fp]), 1)
    fn = m.fn_gt & (gt_label >= 0)
    np.add.at(cm, (gt_label[fn], np.full(int(fn.sum()), k)), 1)
    return cm


def plot_confusion_matrix(
    cm: np.ndarray,
    class_map: ClassMap,
    path: Path,
    iou_threshold: float = CONFUSION_IOU,
    score_threshold: float = CONFUSION_SCORE,
) -> Path:
    """Row-normalised colours (share of each true class), raw counts written in the cells."""
    labels = [*class_map.names, "background"]
    n = len(labels)
    side = min(2.0 + 0.45 * n, 24.0)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class's boxes")
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (IoU {iou_threshold:g}, score >= {score_threshold:g})", fontsize=10)
    if n <= 25:
        r, c = np.nonzero(cm)
        for i, j in zip(r.tolist(), c.tolist()):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if share[i, j] > 0.5 else "black",
            )
    return save_figure(fig, path)
