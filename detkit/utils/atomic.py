"""Write files and folders so that a crash never leaves a half-written artifact behind.

Everything is written under a temporary sibling name and renamed into place once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from detkit.errors import DetkitError


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary keeps ``path``'s suffix so libraries that dispatch on the extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path, path.suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; it becomes ``out`` only if the block succeeds.

    ``out`` must not exist (or be an empty folder) unless ``overwrite`` is set; on failure nothing is left.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise DetkitError("exists and is not a folder", hint="choose another output path", path=out)
        if any(out.iterdir()) and not overwrite:
            raise DetkitError(
                "output folder exists and is not empty",
                hint="remove it, choose another path or set overwrite",
                path=out,
                params="overwrite",
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
