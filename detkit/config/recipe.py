"""Resolve a recipe: ``recipe:NAME`` or a YAML path, ``base:`` inheritance, dotted ``key=value`` overrides.

- ``base:`` (a path relative to the including file, or ``recipe:NAME``; or a list of them, merged in order) is
  loaded first; the including file is merged on top. Dicts deep-merge; lists and scalars are replaced.
  Cycles are refused.
- Overrides ``a.b=value`` are parsed as YAML (so ``model.depth=50`` is an int, ``train.amp=false`` a bool) and
  type-checked by the schema. Unknown keys, in files or overrides, are errors with a "did you mean".
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from detkit.config.schema import Recipe, all_schemas, recipe_schema
from detkit.errors import DetkitError
from detkit.models.families import DEFAULT_FAMILY, FAMILIES, get_family
from detkit.utils.files import pydantic_error_line, read_yaml

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
PREFIX = "recipe:"


# -- names and files ---------------------------------------------------------------------------------------------
def list_recipes() -> list[str]:
    """Names of the shipped recipes (shared ``base*`` parts excluded)."""
    names = [p.stem for p in RECIPES_DIR.glob("*.yaml") if not p.stem.startswith("base")]
    return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


def recipe_path(source: str | Path, relative_to: Path | None = None) -> Path:
    """``recipe:NAME`` → the shipped file; anything else is a path (relative to ``relative_to`` if given)."""
    text = str(source)
    if text.startswith(PREFIX):
        name = text[len(PREFIX) :]
        path = RECIPES_DIR / f"{name}.yaml"
        if not path.is_file():
            names = list_recipes()
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean 'recipe:{close[0]}'?" if close else f"available: {', '.join(names)}"
            raise DetkitError(f"unknown recipe '{name}'", hint=hint)
        return path
    path = Path(text).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if not path.is_file():
        raise DetkitError(
            "recipe file not found", hint="use recipe:NAME (see `detkit recipes list`) or a YAML path", path=path
        )
    return path


# -- schema walking ----------------------------------------------------------------------------------------------
def _model_class(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if (cls := _model_class(arg)) is not None:
                return cls
    return None


def _keys_of(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        keys.append(key)
        sub = _model_class(info.annotation)
        if sub is not None:
            keys.extend(_keys_of(sub, key + "."))
    return keys


def valid_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted key a recipe may set (sections and their leaves); without ``model``, those of any family."""
    if model is not None:
        return _keys_of(model, prefix)
    return list(dict.fromkeys(k for schema in all_schemas() for k in _keys_of(schema, prefix)))


def _section_class(dotted: str) -> type[BaseModel] | None:
    """The pydantic section a dotted key names, in any family's recipe (None for a leaf)."""
    for schema in all_schemas():
        model: type[BaseModel] | None = schema
        for part in dotted.split("."):
            info = model.model_fields.get(part) if model is not None else None
            model = _model_class(info.annotation) if info is not None else None
        if model is not None:
            return model
    return None


def _unknown_key_error(key: str, where: str, path: Path | None = None) -> DetkitError:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "see `detkit recipes show NAME` for the valid keys"
    return DetkitError(f"unknown recipe key '{key}' {where}", hint=hint, path=path)


def _check_keys(data: Mapping, path: Path, prefix: str = "") -> None:
    keys = set(valid_keys())
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if dotted not in keys:
            raise _unknown_key_error(dotted, "in recipe file", path)
        if isinstance(value, Mapping) and _section_class(dotted) is not None:
            _check_keys(value, path, dotted + ".")


def _check_family(data: Mapping, path: Path | None) -> str:
    """The recipe's model family; a ``model:`` or ``loss:`` key of another family is one error naming both."""
    model = data.get("model") if isinstance(data.get("model"), Mapping) else {}
    try:
        family = get_family(model.get("family", DEFAULT_FAMILY))
    except DetkitError as e:
        raise DetkitError(e.message, hint=e.hint, path=path) from None
    own = recipe_schema(family.name)
    for section in ("model", "loss"):
        given = data.get(section)
        if not isinstance(given, Mapping):
            continue
        fields = _model_class(own.model_fields[section].annotation).model_fields
        for key in given:
            if key in fields:
                continue
            other = [
                f
                for f in FAMILIES
                if f != family.name
                and key in _model_class(recipe_schema(f).model_fields[section].annotation).model_fields
            ]
            if other:
                raise DetkitError(
                    f"recipe mixes model families: {section}.{key} is an option of the '{other[0]}' "
                    f"family, but model.family is '{family.name}'",
                    hint=f"remove {section}.{key}, or set model.family={other[0]}",
                    path=path,
                )
    return family.name


def _upgrade(data: dict) -> dict:
    """Recipes written before model families kept the loss settings under ``train.loss``; they now form the
    top-level ``loss:`` section (what the family's criterion reads). Old run folders and checkpoints still load."""
    train = data.get("train")
    if isinstance(train, Mapping) and "loss" in train:
        train = dict(train)
        data = {**data, "train": train}
        legacy = train.pop("loss")
        if isinstance(legacy, Mapping) and "loss" not in data:
            data["loss"] = dict(legacy)
    return data


# -- merging -----------------------------------------------------------------------------------------------------
def deep_merge(base: Mapping, top: Mapping) -> dict:
    """Dicts merge recursively (``top`` wins); lists and scalars from ``top`` replace those of ``base``."""
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _load(path: Path, chain: tuple[Path, ...]) -> dict:
    path = path.resolve()
    if path in chain:
        cycle = " → ".join(p.name for p in (*chain, path))
        raise DetkitError(f"recipe inheritance cycle: {cycle}", path=path)
    data = read_yaml(path, "recipe file")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise DetkitError(f"recipe must be a YAML mapping, got {type(data).__name__}", path=path)
    data = _upgrade(dict(data))
    bases = data.pop("base", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise DetkitError("'base' must be a path or recipe:NAME, or a list of them", path=path)
    _check_keys(data, path)
    merged: dict = {}
    for b in bases:
        merged = deep_merge(merged, _load(recipe_path(b, relative_to=path.parent), (*chain, path)))
    return deep_merge(merged, data)


# -- overrides ---------------------------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` → (``"a.b"``, YAML-parsed value). Tags such as ``!!python/...`` are refused."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise DetkitError(f"override '{text}' is not of the form key=value", hint="e.g. model.decoder_layers=3")
    if key not in valid_keys():
        raise _unknown_key_error(key, f"in override '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DetkitError(
            f"override '{text}': value is not valid YAML ({problem})",
            hint="plain values only: numbers, true/false, strings, [lists]",
        ) from None
    return key, value


def apply_overrides(data: Mapping, overrides: Iterable[str]) -> dict:
    out = deep_merge({}, data)
    for text in overrides:
        key, value = parse_override(text)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            child = node.get(p)
            node[p] = dict(child) if isinstance(child, Mapping) else {}
            node = node[p]
        node[parts[-1]] = value
    return out


# -- entry point -------------------------------------------------------------------------------------------------
def resolve_recipe_dict(source: str | Path | Mapping, overrides: Iterable[str] = ()) -> tuple[dict, Path | None]:
    """The merged plain dict (before validation) and the file it came from."""
    if isinstance(source, Mapping):
        path = None
        data = _upgrade(dict(source))
        data.pop("base", None)
    else:
        path = recipe_path(source)
        data = _load(path, ())
        data.setdefault("name", path.stem)
    return apply_overrides(data, list(overrides)), path


def resolve_recipe(source: str | Path | Mapping, overrides: Iterable[str] = ()) -> Recipe:
    """``recipe:NAME``, a YAML path, or an already resolved dict (e.g. from a checkpoint) → validated Recipe."""
    overrides = list(overrides)
    data, path = resolve_recipe_dict(source, overrides)
    family = _check_family(data, path)
    try:
        return recipe_schema(family).model_validate(data)
    except ValidationError as e:
        where = f" (overrides: {' '.join(overrides)})" if overrides else ""
        raise DetkitError(f"invalid recipe{where}: {pydantic_error_line(e)}", path=path) from None
