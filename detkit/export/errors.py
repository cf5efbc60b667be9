"""The export error: a one-line ``DetkitError`` that also names the parameters the caller may change.

Messages and hints speak of the library's parameters (``decoder_layers``, ``calib_data``); a front end maps
``params`` to its own spelling (the CLI adds its flags to the hint).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from detkit.errors import DetkitError


class ExportError(DetkitError):
    """A refused or failed export; ``params`` are the export parameters (by name) that bear on it."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        path: str | Path | None = None,
        params: str | Sequence[str] = (),
    ):
        super().__init__(message, hint=hint, path=path)
        self.params = (params,) if isinstance(params, str) else tuple(params)
