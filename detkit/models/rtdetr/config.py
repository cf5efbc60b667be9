"""The recipe sections of the RT-DETR family: ``model:`` (``ModelConfig``, one RT-DETR variant) and ``loss:``
(``LossConfig``, the criterion's weights and matching cost)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from detkit.models.matcher import MatcherConfig

FEATURE_LEVELS = 3  # the encoder hands the decoder strides 8, 16 and 32


class ModelConfig(BaseModel):
    """Architecture hyper-parameters (defaults are RT-DETR-R50). Any class count is set at build time."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["rtdetr"] = Field("rtdetr", description="model family (detkit/models/<family>/)")
    # backbone (PResNet-vd)
    depth: Literal[18, 34, 50, 101] = Field(50, description="PResNet-vd depth")
    freeze_stem: bool = Field(True, description="no gradients into the three stem convs (official R50/R101)")
    frozen_bn: bool = Field(True, description="every backbone BatchNorm becomes FrozenBatchNorm2d (R50/R101)")
    # hybrid encoder
    encoder_dim: int = Field(256, gt=0, description="encoder width (384 for R101)")
    encoder_ffn_dim: int = Field(1024, gt=0, description="AIFI feed-forward width")
    encoder_layers: int = Field(1, ge=1, description="AIFI layers on the stride-32 map")
    expansion: float = Field(1.0, gt=0, description="CSPRep hidden width = int(encoder_dim · expansion)")
    depth_mult: float = Field(1.0, gt=0, description="RepVGG blocks per CSPRep layer = round(3 · depth_mult)")
    pe_temperature: float = Field(10000.0, gt=0, description="AIFI sin-cos position embedding temperature")
    # decoder
    hidden_dim: int = Field(256, gt=0, description="decoder width")
    num_heads: int = Field(8, gt=0, description="attention heads (encoder and decoder)")
    num_queries: int = Field(300, gt=0, description="object queries kept by query selection")
    decoder_layers: int = Field(6, ge=1, description="decoder layers (each with its own heads)")
    eval_idx: int = Field(-1, description="decoder layer whose head answers at inference (−1 = last)")
    decoder_ffn_dim: int = Field(1024, gt=0, description="decoder feed-forward width")
    num_points: int | list[int] = Field(
        4, description="deformable sampling points per head: one count for every level, or one per level (v2)"
    )
    cross_attn_method: Literal["default", "discrete"] = Field(
        "default", description="deformable sampling: bilinear (default) or nearest cell by gather (discrete, v2)"
    )
    activation: Literal["relu", "silu"] = Field("relu", description="decoder FFN and MLP heads (DEIM: silu)")
    query_pos_method: Literal["default", "as_reg"] = Field(
        "default", description="query position head: 4→2d→d (default) or 4→d→d→d (as_reg, DEIM's RT-DETRv2)"
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in encoder and decoder layers")
    # contrastive denoising (training only)
    num_denoising: int = Field(100, ge=0, description="denoising queries per image (0 disables CDN)")
    label_noise_ratio: float = Field(0.5, ge=0, le=1, description="label flip probability is half this")
    box_noise_scale: float = Field(1.0, ge=0, description="box jitter in units of half the box size")

    @field_validator("num_points", mode="before")
    @classmethod
    def _points(cls, value):
        """One positive count, or one positive count per feature level (docs/rt-detr.md §8.1)."""
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        if (
            isinstance(value, (list, tuple))
            and len(value) == FEATURE_LEVELS
            and all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in value)
        ):
            return list(value)
        raise ValueError(
            f"must be a positive integer or a list of {FEATURE_LEVELS} positive integers "
            f"(one per feature level), got {value!r}"
        )

    def points_per_level(self) -> list[int]:
        """``num_points`` as one count per feature level."""
        p = self.num_points
        return [p] * FEATURE_LEVELS if isinstance(p, int) else list(p)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if not -self.decoder_layers <= self.eval_idx < self.decoder_layers:
            raise ValueError(f"eval_idx {self.eval_idx} is out of range for {self.decoder_layers} decoder layers")
        for name in ("encoder_dim", "hidden_dim"):
            if getattr(self, name) % self.num_heads:
                raise ValueError(f"{name} must be divisible by num_heads ({self.num_heads})")
        if self.encoder_dim % 4:
            raise ValueError("encoder_dim must be divisible by 4 (2-D sin-cos position embedding)")
        return self


class LossConfig(BaseModel):
    """Loss weights and the varifocal loss shape (docs/rt-detr.md §5.2), and the matching cost (§5.1)."""

    model_config = ConfigDict(extra="forbid")

    classification: Literal["vfl", "mal"] = Field(
        "vfl", description="vfl (RT-DETR) or mal (DEIM, docs/dfine-losses.md)"
    )
    vfl: float = 1.0
    mal: float = 1.0
    bbox: float = 5.0
    giou: float = 2.0
    alpha: float = 0.75
    gamma: float = 2.0
    mal_gamma: float = 1.5
    mal_alpha: float | None = None
    matcher: MatcherConfig = Field(default_factory=MatcherConfig)
