"""The ``augment:`` section of a recipe (``recipe:NAME`` or a YAML file), or a YAML file holding the section itself:
what ``detkit data augment`` previews and writes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from detkit.config.recipe import resolve_recipe
from detkit.data.augment_config import AugmentConfig, augment_config_from_dict
from detkit.errors import DetkitError
from detkit.utils.files import read_yaml


def load_augment_config(source: str | Path) -> tuple[AugmentConfig, int | None]:
    """The ``augment`` section of ``recipe:NAME``, of a recipe YAML, or a YAML file holding the section itself.

    Returns the config and the recipe's training ``imgsz`` when the source is a full recipe (else None).
    """
    text = str(source)
    if text.startswith("recipe:"):
        return _from_recipe(text)
    path = Path(source)
    raw = read_yaml(path, what="recipe file")
    if isinstance(raw, dict) and "augment" in raw:
        if set(raw) - {"augment"}:  # a full recipe: resolve it (base inheritance, schema) when the schema knows augment
            try:
                return _from_recipe(path)
            except DetkitError as e:
                if "no augment section" not in e.message:
                    raise
        return augment_config_from_dict(raw["augment"], source=str(path)), None
    if isinstance(raw, dict) and raw and set(raw) <= set(AugmentConfig.model_fields):
        return augment_config_from_dict(raw, source=str(path)), None
    if isinstance(raw, dict) and raw and set(raw) & {"base", "model", "train"}:
        return _from_recipe(path)
    raise DetkitError(
        "no 'augment' section found",
        hint="give a recipe with an augment: section, the section itself, or recipe:NAME",
        path=path,
    )


def _from_recipe(source: str | Path) -> tuple[AugmentConfig, int | None]:
    recipe = resolve_recipe(source)
    section = getattr(recipe, "augment", None)
    if section is None:
        raise DetkitError(
            f"recipe {source} has no augment section",
            hint="add an augment: section to the recipe, or pass a YAML file holding the section",
        )
    cfg = (
        section
        if isinstance(section, AugmentConfig)
        else augment_config_from_dict(
            section.model_dump() if isinstance(section, BaseModel) else section, source=str(source)
        )
    )
    imgsz = getattr(getattr(recipe, "train", None), "imgsz", None)
    return cfg, int(imgsz) if imgsz else None
