"""Every figure the chain writes keeps its titles, axis labels, tick labels, legends and annotations on the canvas.

Each plot function is called on small data with long names (where names appear) and the figures it saves are
inspected with matplotlib's renderer: the window extent of every text, and the tight bounding box of every axes
(which includes the tick labels that are actually drawn), must lie inside the figure's bounding box."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from detkit.data.classmap import ClassMap
from detkit.utils.figures import figure_texts

LONG_NAMES = ("traffic light with a very long descriptive name", "person", "a bicycle leaning against the wall", "dog")


@pytest.fixture
def saved(monkeypatch):
    """Every matplotlib figure saved while the test runs (and the PNG file it went to)."""
    figures = []
    original = Figure.savefig

    def spy(self, fname, *args, **kwargs):
        figures.append(self)
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


def assert_inside(fig):
    FigureCanvasAgg(fig).draw()
    renderer, frame = fig.canvas.get_renderer(), fig.bbox
    texts = figure_texts(fig)
    assert any(t is ax.title for ax in fig.axes for t in texts), "figure without a title"

    def outside(box):
        return box.x0 < frame.x0 - 0.5 or box.y0 < frame.y0 - 0.5 or box.x1 > frame.x1 + 0.5 or box.y1 > frame.y1 + 0.5

    clipped = [t.get_text() for t in texts if outside(t.get_window_extent(renderer))]
    clipped += [f"axes '{ax.get_title()}' (tick labels)" for ax in fig.axes if outside(ax.get_tightbbox(renderer))]
    assert not clipped, f"outside the {frame.width:.0f}x{frame.height:.0f} px canvas: {clipped}"


def _metrics(k):
    rng = np.random.default_rng(0)
    ious, rec = np.linspace(0.5, 0.95, 10), np.linspace(0, 1, 101)
    precision = np.sort(rng.uniform(0, 1, (10, 101, k)), axis=1)[:, ::-1]
    precision[..., -1] = -1  # a class without ground truth
    per_class = [
        {"name": n, "num_gt": 0 if i == k - 1 else 5, "AP": 0.3, "AP50": 0.5} for i, n in enumerate(LONG_NAMES[:k])
    ]
    return {
        "precision": precision,
        "recall_thresholds": rec,
        "iou_thresholds": ious,
        "AP": 0.31,
        "AP50": 0.52,
        "AP75": 0.3,
        "per_class": per_class,
    }


def test_evaluation_plots(saved, tmp_path):
    from detkit.evaluation.plots import plot_confusion_matrix, plot_pr_overall, plot_pr_per_class

    class_map = ClassMap(LONG_NAMES, (1, 2, 3, 4))
    plot_pr_overall(_metrics(4), tmp_path / "pr.png")
    plot_pr_per_class(_metrics(4), class_map, tmp_path / "pr_per_class.png")
    cm = np.random.default_rng(1).integers(0, 9, (5, 5))
    plot_confusion_matrix(cm, class_map, tmp_path / "cm.png")
    assert len(saved) == 3 and all((tmp_path / n).is_file() for n in ("pr.png", "pr_per_class.png", "cm.png"))
    for fig in saved:
        assert_inside(fig)


def test_a_long_title_is_wrapped_not_clipped(saved, tmp_path):
    from detkit.utils.figures import new_figure, save_figure

    fig = new_figure(3, 2.5)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1])
    long = "a title far longer than a three inch wide figure can hold on one line at all"
    ax.set_title(long)
    ax.set_xlabel("an x label that is also much wider than the axes it labels, by a lot")
    save_figure(fig, tmp_path / "t.png")
    assert "\n" in ax.get_title() and ax.get_title().replace("\n", " ") == long  # wrapped, every word kept
    assert_inside(fig)


def test_robustness_plots(saved, tmp_path):
    from detkit.evaluation.robustness.plots import plot_coco_c, plot_coco_o

    domains = ["cartoon", "handmake", "painting", "sketch", "tattoo", "weather"]
    plot_coco_o(
        {
            "domains": {d: {"AP": 10.0 + i} for i, d in enumerate(domains)},
            "mAP_O": 12.3,
            "clean_AP": 30.1,
            "er_slope": 0.45,
            "effective_robustness": -1.2,
            "relative_drop": 59.1,
        },
        tmp_path / "o.png",
    )
    corruptions = ["gaussian_noise", "jpeg_compression", "motion_blur"]
    plot_coco_c(
        {
            "corruptions": corruptions,
            "severities": [1, 3, 5],
            "AP": {c: {"1": 20.0, "3": 12.0, "5": 5.0} for c in corruptions},
            "clean_AP": 30.0,
            "mPC": 12.3,
            "rPC": 41.0,
        },
        tmp_path / "c.png",
    )
    assert len(saved) == 2
    for fig in saved:
        assert_inside(fig)


def test_dataset_stats_plots(saved, synth_dataset, tmp_path):
    from detkit.data.stats import dataset_stats

    dataset_stats(synth_dataset, plots=tmp_path / "plots")
    assert len(saved) == 5 and len(list((tmp_path / "plots").glob("*.png"))) == 5
    for fig in saved:
        assert_inside(fig)


def test_training_curves(saved, tmp_path):
    from detkit.engine.trainer import plot_history
    from detkit.models.rtdetr import LOSS_GROUPS

    history = [
        {
            "epoch": e,
            "train_loss": 10.0 - e,
            "AP": 0.1 * e,
            "AP50": 0.2 * e,
            "AP75": 0.05 * e,
            **{k: 1.0 / (e + 1) for k in LOSS_GROUPS},
        }
        for e in range(1, 5)
    ]
    plot_history(history, tmp_path, LOSS_GROUPS)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["losses.png", "map.png"] and len(saved) == 2
    for fig in saved:
        assert_inside(fig)
