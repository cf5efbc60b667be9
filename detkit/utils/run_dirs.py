"""Output folders of a stage: ``<parent>/<name>``, or ``<name>2``, ``<name>3``, ... when that one is in use.

The one rule every stage follows: a folder is *in use* when something exists at its path, unless it is an empty
directory (an empty folder is reused). ``name`` must be a plain folder name (no separators, not ``.``/``..``).
"""

from __future__ import annotations

from pathlib import Path

from detkit.errors import DetkitError


def in_use(path: str | Path) -> bool:
    """True when ``path`` exists and is not an empty directory."""
    p = Path(path)
    return p.exists() and (not p.is_dir() or any(p.iterdir()))


def check_folder_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise DetkitError(f"name must be a plain folder name, got {name!r}", params="name")
    return name


def next_run_dir(parent: str | Path, name: str) -> Path:
    """``parent/name`` when it is not in use, else the first of ``name2``, ``name3``, ... that is not."""
    root, base = Path(parent), check_folder_name(name)
    candidate, n = root / base, 1
    while in_use(candidate):
        n += 1
        candidate = root / f"{base}{n}"
    return candidate
