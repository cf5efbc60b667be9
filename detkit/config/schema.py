"""The typed recipe: one pydantic model per section, unknown keys refused (``extra="forbid"``).

The ``model:`` and ``loss:`` sections belong to the model family named by ``model.family`` (default ``rtdetr``):
:func:`recipe_schema` gives the recipe type of one family, whose two sections are that family's config types.
"""

from __future__ import annotations

from functools import cache

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, create_model

from detkit.config.train import TrainConfig
from detkit.data.augment_config import AugmentConfig
from detkit.models.families import DEFAULT_FAMILY, FAMILIES, get_family
from detkit.models.family import ModelFamily


class Recipe(BaseModel):
    """A fully resolved recipe (after ``base:`` inheritance and ``key=value`` overrides)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="recipe name (the file name when not given)")
    description: str = Field("", description="one line shown by `detkit recipes list`")
    model: SerializeAsAny[BaseModel]
    loss: SerializeAsAny[BaseModel]

    # ---- sections owned by the training side (detkit/config/train.py, detkit/data/augment_config.py) ----------------
    train: TrainConfig = Field(default_factory=TrainConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @property
    def family(self) -> ModelFamily:
        return get_family(self.model.family)


@cache
def recipe_schema(family: str = DEFAULT_FAMILY) -> type[Recipe]:
    """The recipe type of one model family: ``model`` and ``loss`` typed by the family."""
    fam = get_family(family)
    return create_model(
        f"Recipe_{fam.name}",
        __base__=Recipe,
        model=(fam.config_type, Field(default_factory=fam.config_type, description=f"{fam.name} architecture")),
        loss=(fam.loss_config_type, Field(default_factory=fam.loss_config_type, description="training criterion")),
    )


def all_schemas() -> list[type[Recipe]]:
    return [recipe_schema(name) for name in FAMILIES]
