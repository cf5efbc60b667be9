"""The typed recipe: one pydantic model per section, unknown keys refused (``extra="forbid"``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from detkit.data.augment_config import AugmentConfig
from detkit.engine.config import TrainConfig
from detkit.models.config import ModelConfig


class Recipe(BaseModel):
    """A fully resolved recipe (after ``base:`` inheritance and ``key=value`` overrides)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="recipe name (the file name when not given)")
    description: str = Field("", description="one line shown by `detkit recipes list`")
    model: ModelConfig = Field(default_factory=ModelConfig)

    # ---- sections owned by the training side (detkit/engine/config.py, detkit/data/augment_config.py) --------
    train: TrainConfig = Field(default_factory=TrainConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
