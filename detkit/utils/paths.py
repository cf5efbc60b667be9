"""Resolve user-supplied relative paths without ever leaving a root folder."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from detkit.errors import DetkitError


def resolve_inside(root: str | Path, relative: str, source: str | Path | None = None, what: str = "path") -> Path:
    """Return ``root / relative`` resolved, refusing absolute paths and anything that escapes ``root``.

    ``source`` (the file the path was read from) is named in the error message.
    """
    where = source if source is not None else root
    if not isinstance(relative, str) or not relative.strip():
        raise DetkitError(f"{what} must be a non-empty relative path, got {relative!r}", path=where)
    if (
        PurePosixPath(relative).is_absolute()
        or PureWindowsPath(relative).is_absolute()
        or PureWindowsPath(relative).drive
    ):
        raise DetkitError(f"{what} {relative!r} is absolute; paths must be relative to the dataset root", path=where)
    if ".." in PurePosixPath(relative.replace("\\", "/")).parts:
        raise DetkitError(f"{what} {relative!r} contains '..'; paths may not leave the dataset root", path=where)
    root_resolved = Path(root).resolve()
    candidate = (root_resolved / relative).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise DetkitError(f"{what} {relative!r} resolves outside the dataset root {root_resolved}", path=where)
    return candidate
