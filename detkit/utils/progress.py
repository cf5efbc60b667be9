"""Progress reporting that library code can use without knowing about the terminal.

Library functions wrap long loops in :func:`track`. It is silent unless the CLI (or a user) enables a
display with :func:`progress_display`; then it drives a rich progress bar. :func:`note` prints one info line
for the user (above the bars when a display is active, on stderr otherwise, nothing inside a display opened
with ``enabled=False``, i.e. under ``--quiet`` / ``--json``).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
_active: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("detkit_progress", default=None)
_silent: contextvars.ContextVar[bool] = contextvars.ContextVar("detkit_silent", default=False)


@contextlib.contextmanager
def progress_display(console: Console | None = None, enabled: bool = True) -> Iterator[None]:
    """Show rich progress bars for every :func:`track` call inside this block."""
    if not enabled:
        silent = _silent.set(True)
        try:
            yield
        finally:
            _silent.reset(silent)
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    token = _active.set(progress)
    try:
        with progress:
            yield
    finally:
        _active.reset(token)


def note(message: str) -> None:
    """One plain info line for the user (not a warning): see the module docstring for where it goes."""
    if _silent.get():
        return
    progress = _active.get()
    if progress is not None:
        progress.console.print(message, markup=False, highlight=False)
    else:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    progress = _active.get()
    if progress is None:
        yield from iterable
        return
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    task = progress.add_task(description, total=total, info="")
    try:
        for item in iterable:
            yield item
            progress.advance(task)
    finally:
        progress.remove_task(task)  # finished bars vanish; commands print their own summary


class ProgressTask:
    """A manually advanced task (for loops that are not plain iterables, e.g. training batches)."""

    def __init__(self, description: str, total: int | None = None):
        self._progress = _active.get()
        self._task = self._progress.add_task(description, total=total, info="") if self._progress else None

    def advance(self, n: int = 1, info: str | None = None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=n, **({"info": info} if info is not None else {}))

    def reset(self, total: int | None = None, description: str | None = None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.reset(self._task, total=total, **({"description": description} if description else {}))

    def close(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
