"""``train:`` section of a recipe: optimiser, schedule, EMA, AMP, batches, multi-scale.

Defaults are the official RT-DETR COCO settings (docs/rt-detr.md §5-6). Points in the run can be given either
as absolute counts (COCO recipes: ``warmup_iters: 2000``) or as fractions of the run (fine-tune recipes:
``warmup_fraction: 0.05``); an epoch field given as a float means "this fraction of ``epochs``" (floored), as
an int an epoch number (0-based), like ``augment.stop_epoch``.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

# Official multi-scale list at 640 px (docs/rt-detr.md §6.4), stored relative to ``imgsz`` so it follows any input size.
OFFICIAL_SCALES_640 = (480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800)
DEFAULT_SCALE_FACTORS = tuple(s / 640 for s in OFFICIAL_SCALES_640)

# Parameter groups of the official R18/R34 config (docs/rt-detr.md §6.2).
# ``lr``/``weight_decay`` of ``None`` = the base values.
R18_PARAM_GROUPS = (
    {"pattern": r"^(?=.*backbone)(?=.*norm|bn).*$", "lr": 1e-5, "weight_decay": 0.0},
    {"pattern": r"^(?=.*backbone)(?!.*norm|bn).*$", "lr": 1e-5},
    {"pattern": r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$", "weight_decay": 0.0},
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamGroupConfig(_Strict):
    """Parameters whose name matches ``pattern`` (``re.findall``) get these settings (unset = base value)."""

    pattern: str
    lr: float | None = Field(default=None, gt=0)
    weight_decay: float | None = Field(default=None, ge=0)


class TrainConfig(_Strict):
    epochs: int = Field(default=72, ge=1)
    batch: int = Field(
        default=16, ge=1, description="total batch size over all processes (per step, before accumulation)"
    )
    accumulate: int = Field(default=1, ge=1, description="optimizer step every N batches")
    workers: int = Field(default=4, ge=0)
    imgsz: int = Field(default=640, ge=32, multiple_of=32)
    val_batch: int = Field(default=16, ge=1)
    seed: int = 0
    device: str = "auto"

    # optimiser (AdamW) and parameter groups; names not matched by any group use lr / weight_decay
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    param_groups: list[ParamGroupConfig] = Field(
        default_factory=lambda: [ParamGroupConfig(**g) for g in R18_PARAM_GROUPS]
    )

    # schedule: linear warmup per iteration, then constant / step / cosine over the rest of the run
    warmup_iters: int = Field(default=2000, ge=0)
    warmup_fraction: float | None = Field(
        default=None, ge=0, lt=1, description="if set, warmup = this fraction of all iterations"
    )
    warmup_shape: Literal["linear", "quadratic"] = Field(
        default="linear", description="lr rises linearly or with the square of the warmup progress (DEIM)"
    )
    schedule: Literal["constant", "step", "cosine", "flat_cosine"] = "constant"
    milestones: list[float] = Field(default_factory=list, description="step schedule: fractions of the run in (0, 1)")
    gamma: float = Field(default=0.1, gt=0, description="step schedule: lr factor at each milestone")
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="cosine, flat_cosine: final lr / base lr")
    flat_epoch: StrictInt | StrictFloat | None = Field(
        default=None,
        description=(
            "flat_cosine: base lr until this 0-based epoch (int) or fraction of the run (float in (0, 1], floored to "
            "an epoch), then cosine decay"
        ),
    )
    cosine_end_epoch: StrictInt | StrictFloat | None = Field(
        default=None,
        description=(
            "flat_cosine: the cosine reaches min_lr_ratio at this epoch (int) or fraction of the run (float) and stays "
            "there; null = the end of the run"
        ),
    )

    clip_grad_norm: float | None = Field(default=0.1, gt=0)
    amp: bool = True
    amp_dtype: Literal["auto", "bf16", "fp16"] = Field(
        default="auto", description="auto: bf16 on CPU and bf16-capable GPUs, else fp16 + GradScaler"
    )

    ema: bool = True
    ema_decay: float = Field(default=0.9999, gt=0, lt=1)
    ema_warmups: int = Field(default=2000, ge=1, description="EMA ramp time constant in updates")

    multiscale: list[float] | None = Field(
        default_factory=lambda: list(DEFAULT_SCALE_FACTORS),
        description="per-batch square sizes as factors of imgsz (rounded to a multiple of 32); null = off",
    )
    multiscale_stop_epoch: StrictInt | StrictFloat | None = Field(
        default=None,
        description=(
            "no multi-scale from this 0-based epoch (int) or fraction of the run (float in (0, 1], floored to an epoch)"
        ),
    )

    sync_bn: bool = True
    find_unused_parameters: bool = False
    early_stop_patience: int | None = Field(
        default=None, ge=1, description="stop after N epochs without a better val mAP"
    )
    nan_guard: bool = True
    time_limit_minutes: float | None = Field(
        default=None,
        gt=0,
        description="end the run (validated and saved) within this wall time; the last epoch may be partial",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if any(not (0 < m < 1) for m in self.milestones):
            raise ValueError("milestones are fractions of the run and must lie strictly between 0 and 1")
        for name in ("multiscale_stop_epoch", "flat_epoch", "cosine_end_epoch"):
            stop = getattr(self, name)
            if (isinstance(stop, int) and stop < 0) or (isinstance(stop, float) and not 0 < stop <= 1):
                raise ValueError(f"{name} is an epoch number >= 0 (int) or a fraction of the run in (0, 1] (float)")
        if self.schedule == "flat_cosine":
            if self.flat_epoch is None:
                raise ValueError("schedule flat_cosine needs flat_epoch (the epoch where the cosine decay starts)")
            flat, end = self.epoch_point(self.flat_epoch), self.epoch_point(self.cosine_end_epoch)
            if end is not None and end < flat:
                raise ValueError(f"cosine_end_epoch ({end}) must not come before flat_epoch ({flat})")
        if self.multiscale is not None and (not self.multiscale or any(f <= 0 for f in self.multiscale)):
            raise ValueError("multiscale factors must be a non-empty list of positive numbers (or null)")
        return self

    # ---- derived values -------------------------------------------------------------------------------
    def epoch_point(self, value: int | float | None) -> int | None:
        """An epoch given as an int, or as a fraction of the run (float), as a 0-based epoch index."""
        if value is None:
            return None
        if isinstance(value, float):
            return int(math.floor(value * self.epochs + 1e-9))  # same convention as augment.stop_epoch
        return int(value)

    def warmup_steps(self, total_steps: int) -> int:
        if self.warmup_fraction is not None:
            return int(round(self.warmup_fraction * total_steps))
        return self.warmup_iters

    def scales(self) -> list[int] | None:
        """Multi-scale square sizes in pixels (multiples of 32)."""
        if not self.multiscale:
            return None
        return [max(32, int(round(self.imgsz * f / 32)) * 32) for f in self.multiscale]
