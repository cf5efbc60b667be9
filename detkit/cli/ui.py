"""How commands talk to the terminal: rich consoles, tables, --json and --quiet, one-line errors."""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

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
        with progress_display(
            console=Console(file=sys.stderr, highlight=False), enabled=not (self.quiet or self.json_mode)
        ):
            yield

    def table(
        self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], optional: Sequence[str] = ()
    ) -> None:
        """Print a table that fits the console (80 columns in a pipe or CI log) without ever breaking a number.

        Numbers are rounded to the digits that matter (:func:`fmt_number`) and every column is at least as wide as
        its longest number, so numbers never wrap; text and headers wrap between words. When the table is too
        wide, the ``optional`` columns are dropped (in that order, with a note); if it still does not fit, each row
        is stacked as ``column  value`` lines."""
        columns = [str(c) for c in columns]
        cells = [[_fmt(v) for v in r] for r in rows]
        shown = list(range(len(columns)))
        for name in [*optional, None]:
            if _min_width(columns, cells, shown) <= self.console.width:
                break
            if name is not None and name in columns and len(shown) > 1:
                shown.remove(columns.index(name))
        dropped = [columns[i] for i in range(len(columns)) if i not in shown]
        if _min_width(columns, cells, shown) > self.console.width:
            self.console.print(_stacked(title, columns, cells))
            return
        t = Table(title=title, title_justify="left")
        widths = _allocate(columns, cells, shown, self.console.width)
        for i in shown:
            numeric = _is_numeric_column([r[i] for r in cells if i < len(r)])
            # at least as wide as its longest number (so a number never wraps) and its longest header word
            t.add_column(
                columns[i],
                justify="right" if numeric else "left",
                width=widths.get(i),
                min_width=_column_min(columns[i], [r[i] for r in cells if i < len(r)]),
                overflow="fold",
            )
        for r in cells:
            t.add_row(*[r[i] if i < len(r) else "" for i in shown])
        self.console.print(t)
        if dropped:
            self.console.print(
                f"[dim](not shown at this width: {', '.join(dropped)}; widen the terminal or use --json)[/]"
            )

    def artifacts(self, label: str, path: Any) -> None:
        self.console.print(f"[green]✓[/] {label}: [bold]{path}[/]")

    def emit_json(self, obj: Any) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps(obj, default=str) + "\n")
            sys.stdout.flush()


def fmt_number(v: float) -> str:
    """A float with the digits that matter: 3 significant digits, whole numbers from 100 on, e-notation below 0.001."""
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.001:
        return f"{v:.3f}"
    return f"{v:.1e}"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return fmt_number(v)
    return str(v)


_NUMBER = re.compile(r"^[-+]?(\d[\d,]*)?\.?\d+(e[-+]?\d+)?( ?(%|M|k|ms|px|s|x))?$|^(nan|inf|-|—)?$", re.IGNORECASE)
TEXT_TOKEN_CAP = 24  # longer words (paths) may fold; numbers never get that long


def _plain(cell: str) -> str:
    return Text.from_markup(cell).plain if "[" in cell else cell


def _is_numeric_column(values: Sequence[str]) -> bool:
    plain = [_plain(v).strip() for v in values]
    return any(plain) and all(_NUMBER.match(v) for v in plain)


def _column_min(header: str, values: Sequence[str]) -> int:
    """The narrowest the column may get: its longest header word and, for cells, the longest word (whole numbers,
    text words up to TEXT_TOKEN_CAP characters)."""
    plain = [_plain(v) for v in values]
    head = max((len(w) for w in header.split()), default=0)
    if _is_numeric_column(values):
        return max(head, *(len(v.strip()) for v in plain))
    words = [len(w) for v in plain for w in v.split()]
    return max(head, min(max(words, default=0), TEXT_TOKEN_CAP))


def _min_width(columns: Sequence[str], cells: Sequence[Sequence[str]], shown: Sequence[int]) -> int:
    """Width of the table at its narrowest: column minimums plus rich's borders and padding (3 per column + 1)."""
    return sum(_column_min(columns[i], [r[i] for r in cells if i < len(r)]) for i in shown) + 3 * len(shown) + 1


def _allocate(
    columns: Sequence[str], cells: Sequence[Sequence[str]], shown: Sequence[int], total: int
) -> dict[int, int]:
    """Column widths when the table would not fit at its natural width (else {}): every column gets its minimum,
    then the space left widens numeric columns (unwrapped headers) and then the narrowest text columns first."""
    values = {i: [r[i] for r in cells if i < len(r)] for i in shown}
    natural = {i: max(len(columns[i]), *(len(_plain(v)) for v in values[i])) for i in shown}
    room = total - 3 * len(shown) - 1
    if sum(natural.values()) <= room:
        return {}
    widths = {i: _column_min(columns[i], values[i]) for i in shown}
    spare = room - sum(widths.values())
    for i in sorted(shown, key=lambda i: (not _is_numeric_column(values[i]), natural[i] - widths[i])):
        grow = max(0, min(spare, natural[i] - widths[i]))
        widths[i] += grow
        spare -= grow
    return widths


def _stacked(title: str, columns: Sequence[str], cells: Sequence[Sequence[str]]) -> Table:
    """The table turned on its side: one ``column  value`` line per cell, rows separated by a rule."""
    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column("", style="bold", min_width=max((len(w) for c in columns for w in c.split()), default=1))
    t.add_column(
        "", overflow="fold", min_width=min(max((len(_plain(v)) for r in cells for v in r), default=1), TEXT_TOKEN_CAP)
    )
    for n, r in enumerate(cells):
        for i, c in enumerate(columns):
            t.add_row(c, r[i] if i < len(r) else "", end_section=(i == len(columns) - 1 and n < len(cells) - 1))
    return t


def print_error(message: str, hint: str | None = None) -> None:
    """One red line naming the problem, then an optional dim hint line; both on stderr."""
    err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    err.print("[bold red]error:[/] " + _escape(message), markup=True)
    if hint:
        err.print("[dim]hint:[/] " + _escape(hint), markup=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text.replace("\n", " "))
