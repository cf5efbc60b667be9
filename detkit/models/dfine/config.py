"""``DFineConfig``: the ``model:`` section of a recipe for the D-FINE family (docs/dfine.md).

``size`` picks a preset (N/S/M/L/X) that fills every architecture field; any field given explicitly overrides the
preset. Validated after the preset is applied, so a partial override is checked against the rest of the preset.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Size = Literal["n", "s", "m", "l", "x"]

# HGNetv2 variants: stem [in, mid, out]; per stage (in, mid, out, blocks, layers per block, kernel, light, downsample)
HGNETV2 = {
    "B0": {
        "stem": (3, 16, 16),
        "stages": (
            (16, 16, 64, 1, 3, 3, False, False),
            (64, 32, 256, 1, 3, 3, False, True),
            (256, 64, 512, 2, 3, 5, True, True),
            (512, 128, 1024, 1, 3, 5, True, True),
        ),
    },
    "B2": {
        "stem": (3, 24, 32),
        "stages": (
            (32, 32, 96, 1, 4, 3, False, False),
            (96, 64, 384, 1, 4, 3, False, True),
            (384, 128, 768, 3, 4, 5, True, True),
            (768, 256, 1536, 1, 4, 5, True, True),
        ),
    },
    "B4": {
        "stem": (3, 32, 48),
        "stages": (
            (48, 48, 128, 1, 6, 3, False, False),
            (128, 96, 512, 1, 6, 3, False, True),
            (512, 192, 1024, 3, 6, 5, True, True),
            (1024, 384, 2048, 1, 6, 5, True, True),
        ),
    },
    "B5": {
        "stem": (3, 32, 64),
        "stages": (
            (64, 64, 128, 1, 6, 3, False, False),
            (128, 128, 512, 2, 6, 3, False, True),
            (512, 256, 1024, 5, 6, 5, True, True),
            (1024, 512, 2048, 2, 6, 5, True, True),
        ),
    },
}


def _preset(backbone, lab, stages, frozen, enc, enc_ffn, expansion, depth, layers, points, reg_scale):
    small = enc == 128  # N: decoder width 128 and FFN 512
    return {
        "backbone": backbone,
        "use_lab": lab,
        "return_stages": stages,
        "freeze_stem": frozen,
        "frozen_bn": frozen,
        "encoder_dim": enc,
        "encoder_ffn_dim": enc_ffn,
        "expansion": expansion,
        "depth_mult": depth,
        "hidden_dim": 128 if small else 256,
        "decoder_ffn_dim": 512 if small else 1024,
        "decoder_layers": layers,
        "num_points": points,
        "reg_scale": reg_scale,
    }


# per size (docs/dfine.md §2, §3, §7): backbone, LAB, stages, frozen stem+BN, encoder width/FFN, expansion, depth_mult,
# decoder layers, points per level, reg_scale (decoder width 128 / FFN 512 for N, else 256 / 1024)
PRESETS: dict[str, dict[str, Any]] = {
    "n": _preset("B0", True, [3, 4], False, 128, 512, 0.34, 0.5, 3, [6, 6], 4.0),
    "s": _preset("B0", True, [2, 3, 4], False, 256, 1024, 0.5, 0.34, 3, [3, 6, 3], 4.0),
    "m": _preset("B2", True, [2, 3, 4], False, 256, 1024, 1.0, 0.67, 4, [3, 6, 3], 4.0),
    "l": _preset("B4", False, [2, 3, 4], True, 256, 1024, 1.0, 1.0, 6, [3, 6, 3], 4.0),
    "x": _preset("B5", False, [2, 3, 4], True, 384, 2048, 1.0, 1.0, 6, [3, 6, 3], 8.0),
}


class DFineConfig(BaseModel):
    """Architecture of one D-FINE model. Defaults of the architecture fields come from the ``size`` preset."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["dfine"] = "dfine"
    size: Size = Field("s", description="preset N/S/M/L/X filling every architecture field not given")
    # backbone (HGNetv2)
    backbone: Literal["B0", "B2", "B4", "B5"] | None = Field(None, description="HGNetv2 variant")
    use_lab: bool | None = Field(None, description="learnable affine (scale, bias) after every activated conv")
    return_stages: list[int] | None = Field(None, description="backbone stages (1-4, strides 4-32) fed to the encoder")
    freeze_stem: bool | None = Field(None, description="no gradients into the backbone stem (official L/X)")
    frozen_bn: bool | None = Field(None, description="every backbone BatchNorm frozen (official L/X)")
    # hybrid encoder
    encoder_dim: int | None = Field(None, gt=0, description="encoder width")
    encoder_ffn_dim: int | None = Field(None, gt=0, description="AIFI feed-forward width")
    encoder_layers: int = Field(1, ge=1, description="AIFI layers on the coarsest map")
    expansion: float | None = Field(None, gt=0, description="ELAN branch width = round(expansion·encoder_dim // 2)")
    depth_mult: float | None = Field(None, gt=0, description="RepVGG blocks per CSP layer = round(3·depth_mult)")
    pe_temperature: float = Field(10000.0, gt=0, description="AIFI sin-cos position embedding temperature")
    # decoder
    hidden_dim: int | None = Field(None, gt=0, description="decoder width")
    num_heads: int = Field(8, gt=0, description="attention heads (encoder and decoder)")
    num_queries: int = Field(300, gt=0, description="object queries kept by query selection")
    decoder_layers: int | None = Field(None, ge=1, description="decoder layers")
    decoder_ffn_dim: int | None = Field(None, gt=0, description="decoder feed-forward width")
    num_points: list[int] | None = Field(None, description="deformable sampling points per level (one per level)")
    eval_idx: int = Field(-1, description="decoder layer answering at inference (−1 = last)")
    reg_max: int = Field(32, ge=4, description="bins per edge distribution minus one (even)")
    reg_scale: float | None = Field(None, gt=0, description="curvature of the weighting function (4; 8 for X)")
    up: float = Field(0.5, gt=0, description="upper bound of the weighting function, in box sizes")
    activation: Literal["relu", "silu"] = Field("relu", description="decoder FFN / MLP / LQE activation (DEIM: silu)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in encoder and decoder layers")
    # contrastive denoising (training only)
    num_denoising: int = Field(100, ge=0, description="denoising queries per image (0 disables CDN)")
    label_noise_ratio: float = Field(0.5, ge=0, le=1, description="label flip probability is half this")
    box_noise_scale: float = Field(1.0, ge=0, description="box jitter in units of half the box size")

    @model_validator(mode="after")
    def _fill_and_check(self) -> DFineConfig:
        for name, value in PRESETS[self.size].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, list(value) if isinstance(value, list) else value)
        stages = self.return_stages
        if not stages or sorted(set(stages)) != stages or not all(1 <= s <= 4 for s in stages):
            raise ValueError(f"return_stages must be increasing stage numbers in 1..4, got {stages}")
        if len(self.num_points) != len(stages):
            raise ValueError(f"num_points needs one count per feature level ({len(stages)}), got {self.num_points}")
        if any(p < 1 for p in self.num_points):
            raise ValueError(f"num_points must be positive, got {self.num_points}")
        if not -self.decoder_layers <= self.eval_idx < self.decoder_layers:
            raise ValueError(f"eval_idx {self.eval_idx} is out of range for {self.decoder_layers} decoder layers")
        for name in ("encoder_dim", "hidden_dim"):
            if getattr(self, name) % self.num_heads:
                raise ValueError(f"{name} must be divisible by num_heads ({self.num_heads})")
        if self.encoder_dim % 4:
            raise ValueError("encoder_dim must be divisible by 4 (2-D sin-cos position embedding)")
        if self.reg_max % 2:
            raise ValueError(f"reg_max must be even, got {self.reg_max}")
        return self

    @property
    def strides(self) -> list[int]:
        """Strides of the feature levels (stage s has stride 2^(s+1))."""
        return [2 ** (s + 1) for s in self.return_stages]
