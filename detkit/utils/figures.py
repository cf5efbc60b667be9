"""Matplotlib figures without global pyplot state, saved atomically as PNG (one place for every plot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detkit.utils.atomic import atomic_path


def new_figure(width: float, height: float, **kwargs: Any) -> Any:
    """A figure on the Agg canvas (no display, no pyplot registry, safe in threads and servers)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), **kwargs)


def save_figure(fig: Any, path: str | Path, dpi: int = 100, **kwargs: Any) -> Path:
    """Write ``fig`` (from :func:`new_figure`) as PNG under a temporary name and rename it into place."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, **kwargs)
    return path
