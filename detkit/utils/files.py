"""Read YAML and JSON safely, turning every failure into a one-line DetkitError that names the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from detkit.errors import DetkitError


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise DetkitError(f"{what} not found", path=path)
    if not path.is_file():
        raise DetkitError(f"{what} is not a file", path=path)


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """``yaml.safe_load`` with clean errors. Language tags (``!!python/...``) are refused, never executed."""
    path = Path(path)
    _require_file(path, what)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DetkitError(f"{what} is not UTF-8 text", path=path) from None
    try:
        return yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise DetkitError(
            f"YAML tag not allowed{where}: {e.problem}", hint="detkit only reads plain YAML", path=path
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DetkitError(f"malformed YAML ({where}{problem})", path=path) from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    path = Path(path)
    _require_file(path, what)
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DetkitError(f"malformed JSON (line {e.lineno}, column {e.colno}: {e.msg})", path=path) from None
    except UnicodeDecodeError:
        raise DetkitError(f"{what} is not UTF-8 text", path=path) from None


def pydantic_error_line(err: Exception) -> str:
    """First problem of a pydantic ValidationError as 'a.b.c: message'."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        msg = str(first.get("msg", "invalid"))
        if first.get("type") == "value_error":  # our own validators' text, without pydantic's "Value error, "
            msg = msg.removeprefix("Value error, ")
        loc = ".".join(str(p) for p in first.get("loc", ()))
        more = len(errors()) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        return f"{loc + ': ' if loc else ''}{msg}{tail}"
    return str(err).splitlines()[0]
