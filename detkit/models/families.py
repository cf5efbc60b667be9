"""The registry of model families: ``model.family`` in a recipe → its :class:`~detkit.models.family.ModelFamily`."""

from __future__ import annotations

import difflib
from typing import Any

from detkit.errors import DetkitError
from detkit.models.dfine import FAMILY as DFINE_FAMILY
from detkit.models.family import ForeignWeights, ModelFamily
from detkit.models.rtdetr import FAMILY as RTDETR_FAMILY

DEFAULT_FAMILY = "rtdetr"
FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (RTDETR_FAMILY, DFINE_FAMILY)}


def get_family(name: str) -> ModelFamily:
    """The family called ``name``; an unknown name is one error line with a did-you-mean."""
    family = FAMILIES.get(str(name))
    if family is None:
        close = difflib.get_close_matches(str(name), list(FAMILIES), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known families: {', '.join(FAMILIES)}"
        raise DetkitError(f"unknown model family '{name}'", hint=hint)
    return family


def family_of(model_cfg: Any) -> ModelFamily:
    """The family of a ``model:`` section (a family config object or its plain dict)."""
    name = model_cfg.get("family", DEFAULT_FAMILY) if isinstance(model_cfg, dict) else model_cfg.family
    return get_family(name)


def build_model(model_cfg: Any, num_classes: int):
    """The detector of ``model_cfg``'s family for ``num_classes`` classes, randomly initialised."""
    return family_of(model_cfg).build_model(model_cfg, num_classes)


def read_foreign_weights(state_dict: dict) -> tuple[ModelFamily, ForeignWeights]:
    """The family and architecture of weights without a recipe: the first family that reads them whole (the most
    specific first: an official D-FINE file also looks like an official RT-DETR v2 layout to RT-DETR's reader).

    When none does, the default family's error says why (its message names what it expected).
    """
    errors: dict[str, DetkitError] = {}
    for name in sorted(FAMILIES, key=lambda n: n == DEFAULT_FAMILY):
        try:
            return FAMILIES[name], FAMILIES[name].read_foreign(state_dict)
        except DetkitError as e:
            errors[name] = e
    raise errors[DEFAULT_FAMILY]


def weights_hint() -> str:
    return "detkit reads " + "; or ".join(f.weights_hint for f in FAMILIES.values())


def check_weights_family(family: ModelFamily, state_dict: dict, weights_recipe: dict | None, source: str) -> None:
    """Refuse weights of another family in one line: a detkit checkpoint says its family in its recipe; foreign
    weights are recognised by the family that reads them (weights no family reads whole are left to the loader)."""
    other = None
    if weights_recipe is not None:
        model = weights_recipe.get("model") if isinstance(weights_recipe.get("model"), dict) else {}
        other = model.get("family", DEFAULT_FAMILY)
    else:
        try:
            other = read_foreign_weights(state_dict)[0].name
        except DetkitError:
            return
    if other != family.name:
        raise DetkitError(
            f"{source}: these are weights of a '{other}' model, but the recipe's model.family is '{family.name}'",
            hint=f"use a recipe of the '{other}' family, or weights of a '{family.name}' model",
        )
