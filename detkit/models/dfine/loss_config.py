"""``loss:`` settings of the D-FINE family (docs/dfine-losses.md §7).

Defaults are D-FINE's official COCO weights; DEIM recipes set ``classification: mal``. Only the term named by
``classification`` is computed, with its own weight (``vfl`` or ``mal``); the other weight is unused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from detkit.models.matcher import MatcherConfig


class DFineLossConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classification: Literal["vfl", "mal"] = Field(
        default="vfl", description="vfl: varifocal (D-FINE); mal: Matchability-Aware Loss (DEIM)"
    )
    vfl: float = Field(default=1.0, ge=0, description="weight of the varifocal term (classification: vfl)")
    mal: float = Field(default=1.0, ge=0, description="weight of the MAL term (classification: mal)")
    bbox: float = Field(default=5.0, ge=0, description="weight of the L1 box term")
    giou: float = Field(default=2.0, ge=0, description="weight of the GIoU term")
    fgl: float = Field(default=0.15, ge=0, description="weight of the fine-grained localisation term")
    ddf: float = Field(default=1.5, ge=0, description="weight of the decoupled distillation term")
    alpha: float = Field(default=0.75, ge=0, description="varifocal: weight of the negatives")
    gamma: float = Field(default=2.0, ge=0, description="varifocal: focusing exponent")
    mal_gamma: float = Field(default=1.5, gt=0, description="MAL: exponent of the IoU target and of the negatives")
    mal_alpha: float | None = Field(default=None, ge=0, description="MAL: optional weight of the negatives")
    ddf_temperature: float = Field(default=5.0, gt=0, description="DDF: softmax temperature T (loss scaled by T²)")
    union_set: bool = Field(default=True, description="box and local terms on the union of all layers' matchings")
    matcher: MatcherConfig = Field(default_factory=MatcherConfig)

    @property
    def classification_weight(self) -> float:
        return self.mal if self.classification == "mal" else self.vfl
