"""The ``--slice H W --overlap F`` options shared by ``detkit predict`` and ``detkit eval``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from detkit.errors import DetkitError

SLICE_HELP = (
    "Sliced inference for small objects: run the model on overlapping tiles of H×W pixels (each resized to "
    "the model size) plus the full image, and merge the boxes."
)
OVERLAP_HELP = "Fraction of a tile that neighbouring tiles share, in [0, 1) [default: 0.2; needs --slice]."

_FLAGS = {"slice_hw": "--slice H W", "overlap": "--overlap F"}
_HINTS = {
    "slice_hw": "--slice takes the tile height and width in pixels, e.g. --slice 256 256",
    "overlap": "--overlap takes the fraction of a tile its neighbours share, in [0, 1), e.g. --overlap 0.2",
}


def slice_option() -> Any:
    return typer.Option(None, "--slice", metavar="H W", help=SLICE_HELP, show_default=False)


def overlap_option() -> Any:
    return typer.Option(None, "--overlap", help=OVERLAP_HELP, show_default=False)


def slicing_kwargs(slice_hw: tuple[int, int] | None, overlap: float | None) -> dict[str, Any]:
    """The library's ``slice_hw``/``overlap`` arguments from the two options."""
    from detkit.slicing import DEFAULT_OVERLAP

    if slice_hw is None and overlap is not None:
        raise DetkitError("--overlap only applies with --slice", hint="add --slice H W (tile size in pixels)")
    return {"slice_hw": slice_hw, "overlap": DEFAULT_OVERLAP if overlap is None else overlap}


@contextmanager
def slicing_flag_hints() -> Iterator[None]:
    """Re-raise the library's slicing errors (which name ``slice_hw``/``overlap``) with a hint naming the flag."""
    from detkit.slicing import SlicingError

    try:
        yield
    except SlicingError as e:
        hint = f"{e.hint} ({_FLAGS[e.param]})" if e.hint else _HINTS[e.param]
        raise DetkitError(e.message, hint=hint) from None
