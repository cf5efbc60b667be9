"""Matplotlib figures without global pyplot state, saved atomically as PNG (one place for every plot).

Every figure uses the constrained layout engine (titles, axis labels, tick labels, colorbars and legends get room
on the canvas), and :func:`fit_text` wraps or shrinks any title or label that would still not fit before the
figure is written, so nothing a person reads is clipped at the edge of the PNG."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from detkit.utils.atomic import atomic_path

MIN_FONT_SIZE = 6.0


def new_figure(width: float, height: float, **kwargs: Any) -> Any:
    """A figure on the Agg canvas (no display, no pyplot registry, safe in threads and servers), laid out by
    matplotlib's constrained layout unless ``layout`` says otherwise."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kwargs.setdefault("layout", "constrained")
    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def figure_texts(fig: Any) -> list[Any]:
    """The texts a person reads: figure titles, axes titles, axis labels, legend entries and annotations."""
    texts = [
        t
        for t in (getattr(fig, "_suptitle", None), getattr(fig, "_supxlabel", None), getattr(fig, "_supylabel", None))
        if t
    ]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        if ax.get_legend() is not None:
            texts += list(ax.get_legend().get_texts())
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def _outside(bbox: Any, frame: Any, slack: float = 0.5) -> bool:
    return (
        bbox.x0 < frame.x0 - slack
        or bbox.y0 < frame.y0 - slack
        or bbox.x1 > frame.x1 + slack
        or bbox.y1 > frame.y1 + slack
    )


def fit_text(fig: Any, rounds: int = 4) -> None:
    """Wrap titles wider than their axes (or the figure), and shrink any text still outside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    for _ in range(rounds):
        fig.canvas.draw()  # runs the layout engine
        renderer = fig.canvas.get_renderer()
        changed = False
        titles = {id(t): ax for ax in fig.axes for t in (ax.title, ax._left_title, ax._right_title)}
        for text in figure_texts(fig):
            box = text.get_window_extent(renderer)
            room = titles[id(text)].get_window_extent(renderer).width * 1.1 if id(text) in titles else fig.bbox.width
            room = min(room, fig.bbox.width * 0.98)
            if box.width > room and text.get_rotation() == 0 and len(text.get_text()) > 8:
                width = max(8, int(len(text.get_text().replace("\n", " ")) * room / box.width) - 1)
                wrapped = textwrap.fill(text.get_text().replace("\n", " "), width)
                if wrapped != text.get_text():
                    text.set_text(wrapped)
                    changed = True
                    continue
            if _outside(box, fig.bbox) and text.get_fontsize() > MIN_FONT_SIZE:
                text.set_fontsize(max(MIN_FONT_SIZE, text.get_fontsize() * 0.85))
                changed = True
        if not changed:
            return


def save_figure(fig: Any, path: str | Path, dpi: int = 100, **kwargs: Any) -> Path:
    """Write ``fig`` (from :func:`new_figure`) as PNG under a temporary name and rename it into place."""
    path = Path(path)
    fit_text(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, **kwargs)
    return path
