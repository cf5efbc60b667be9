"""How commands talk to the terminal: rich consoles, tables, --json and --quiet, one-line errors."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from detkit.utils.progress import progress_display


class UI:
    """Per-command output settings.

    With ``json_mode`` stdout carries exactly one JSON object; everything for humans goes to stderr.
    With ``quiet`` only warnings, errors and the JSON object are printed.
    """

    def __init__(self, json_mode: bool = False, quiet: bool = False):
        self.json_mode = json_mode
        self.quiet = quiet
        self.console = Console(file=sys.stderr if json_mode else sys.stdout, quiet=quiet or json_mode, highlight=False)
        self.err = Console(file=sys.stderr, highlight=False)

    def print(self, *args: Any, **kwargs: Any) -> None:
        self.console.print(*args, **kwargs)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {message}", markup=True)

    @contextlib.contextmanager
    def progress(self) -> Iterator[None]:
        with progress_display(console=Console(file=sys.stderr, highlight=False), enabled=not (self.quiet or self.json_mode)):
            yield

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        t = Table(title=title, title_justify="left")
        for c in columns:
            t.add_column(str(c), overflow="fold")
        for r in rows:
            t.add_row(*[_fmt(v) for v in r])
        self.console.print(t)

    def artifacts(self, label: str, path: Any) -> None:
        self.console.print(f"[green]✓[/] {label}: [bold]{path}[/]")

    def emit_json(self, obj: Any) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps(obj, default=str) + "\n")
            sys.stdout.flush()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


def print_error(message: str, hint: str | None = None) -> None:
    """One red line naming the problem, then an optional dim hint line; both on stderr."""
    err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    err.print("[bold red]error:[/] " + _escape(message), markup=True)
    if hint:
        err.print("[dim]hint:[/] " + _escape(hint), markup=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text.replace("\n", " "))
