"""The one exception type users see as a clean, one-line error."""

from __future__ import annotations

from pathlib import Path


class DetkitError(Exception):
    """An error caused by the user's input or environment, shown without a traceback.

    ``message`` should name the file (and line or id) and the problem; ``hint`` says what to do.
    """

    def __init__(self, message: str, hint: str | None = None, path: str | Path | None = None):
        if path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message
