"""The one exception type users see as a clean, one-line error."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DetkitError(Exception):
    """An error caused by the user's input or environment, shown without a traceback.

    ``message`` should name the file (and line or id) and the problem; ``hint`` says what to do. ``params`` names
    the library parameters the error is about (as the message does), so that a front end can name its own spelling
    of them: the CLI adds its flags (``split`` → ``--split``) to the hint.
    """

    def __init__(
        self, message: str, hint: str | None = None, path: str | Path | None = None, params: str | Sequence[str] = ()
    ):
        if path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.params = (params,) if isinstance(params, str) else tuple(params)

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message
