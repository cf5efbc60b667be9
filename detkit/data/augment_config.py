"""The ``augment:`` recipe section: typed, validated settings of the train-time augmentation.

Defaults are the official RT-DETR train pipeline (docs/rtdetr.md §6.3); :mod:`detkit.data.augment` builds the
pipeline from these settings. ``stop_epoch`` (an epoch number, or a fraction of the run) switches the three heavy
ops off from that epoch on (RT-DETRv2's dynamic augmentation, docs/rtdetr.md §6.5).

``extra`` adds any albumentations transform by class name (``{name: MotionBlur, p: 0.2, kwargs: {blur_limit: 7}}``);
names are looked up on the albumentations module and must be in its allowlist (pixel-only transforms and those
that move bounding boxes); nothing is ever evaluated. An op is built once when the section is validated, so bad
names and arguments fail early with the op's index.

Example recipe section::

    augment:
      zoom_out: {p: 0.5, side_range: [1.0, 4.0]}
      iou_crop: {p: 0.8}
      extra:
        - {name: MotionBlur, p: 0.1, kwargs: {blur_limit: 7}}
      stop_epoch: 0.9
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from detkit.errors import DetkitError
from detkit.utils.files import pydantic_error_line

HEAVY_OPS = ("photometric_distort", "zoom_out", "iou_crop")


def _check_range(v: tuple[float, float], lo: float | None = None) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"range [{v[0]}, {v[1]}] must have low <= high")
    if lo is not None and v[0] < lo:
        raise ValueError(f"range [{v[0]}, {v[1]}] must start at {lo} or more")
    return v


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p: float = Field(0.5, ge=0.0, le=1.0, description="probability of applying the op to a sample")


class PhotometricDistortConfig(_Op):
    """torchvision RandomPhotometricDistort: each colour change with ``p_each``; channels permuted with ``p_each``."""

    brightness: tuple[float, float] = (0.875, 1.125)
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.5, 1.5)
    hue: tuple[float, float] = (-0.05, 0.05)
    p_each: float = Field(0.5, ge=0.0, le=1.0)

    @field_validator("brightness", "contrast", "saturation")
    @classmethod
    def _factors(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range(v, lo=0.0)

    @field_validator("hue")
    @classmethod
    def _hue(cls, v: tuple[float, float]) -> tuple[float, float]:
        _check_range(v)
        if not (-0.5 <= v[0] and v[1] <= 0.5):
            raise ValueError("hue shifts are fractions of the colour circle in [-0.5, 0.5]")
        return v


class ZoomOutConfig(_Op):
    """Place the image on a canvas ``U(side_range)`` times larger, filled with ``fill``."""

    side_range: tuple[float, float] = (1.0, 4.0)
    fill: int | tuple[int, int, int] = 0

    @field_validator("side_range")
    @classmethod
    def _side(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range(v, lo=1.0)


class IoUCropConfig(_Op):
    """SSD-style crop with a minimum IoU drawn from ``min_iou_options`` (1.0 = keep the image)."""

    p: float = Field(0.8, ge=0.0, le=1.0)
    min_scale: float = Field(0.3, gt=0.0, le=1.0)
    max_scale: float = Field(1.0, gt=0.0, le=1.0)
    min_aspect: float = Field(0.5, gt=0.0)
    max_aspect: float = Field(2.0, gt=0.0)
    min_iou_options: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0], min_length=1)
    trials: int = Field(40, ge=1)

    @model_validator(mode="after")
    def _ranges(self) -> IoUCropConfig:
        _check_range((self.min_scale, self.max_scale))
        _check_range((self.min_aspect, self.max_aspect))
        return self


class FlipConfig(_Op):
    """Horizontal flip."""


class ExtraOp(BaseModel):
    """Any allowed albumentations transform, by class name, with its keyword arguments."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, description="albumentations class name, e.g. MotionBlur")
    p: float = Field(0.5, ge=0.0, le=1.0)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class AugmentConfig(BaseModel):
    """The ``augment:`` recipe section (defaults: the official RT-DETR train pipeline)."""

    model_config = ConfigDict(extra="forbid")
    photometric_distort: PhotometricDistortConfig = Field(default_factory=PhotometricDistortConfig)
    zoom_out: ZoomOutConfig = Field(default_factory=ZoomOutConfig)
    iou_crop: IoUCropConfig = Field(default_factory=IoUCropConfig)
    hflip: FlipConfig = Field(default_factory=FlipConfig)
    extra: list[ExtraOp] = Field(default_factory=list, description="albumentations ops applied after the flip")
    min_size: float = Field(1.0, ge=0.0, description="boxes narrower or lower than this (pixels) are dropped")
    stop_epoch: StrictInt | StrictFloat | None = Field(
        None, description="epoch (int, 0-based) or fraction of the run (float in (0, 1], floored to an epoch) "
        "from which the heavy ops stop"
    )

    @field_validator("stop_epoch")
    @classmethod
    def _stop(cls, v: int | float | None) -> int | float | None:
        if isinstance(v, int) and v < 0:
            raise ValueError("an epoch number must be >= 0")
        if isinstance(v, float) and not 0.0 < v <= 1.0:
            raise ValueError("a fraction of the run must be in (0, 1]; use an int for an epoch number")
        return v

    @field_validator("extra")
    @classmethod
    def _extras_exist(cls, ops: list[ExtraOp]) -> list[ExtraOp]:
        for i, op in enumerate(ops):
            try:
                make_extra_op(op)  # the name is in the allowlist and albumentations accepts the arguments
            except ValueError as e:
                raise ValueError(f"[{i}] {e}") from None
        return ops


def make_extra_op(op: ExtraOp) -> Any:
    from detkit.data.augment_ops import allowed_albumentations, make_albumentation

    try:
        return make_albumentation(op.name, op.p, dict(op.kwargs))
    except KeyError:
        close = difflib.get_close_matches(op.name, list(allowed_albumentations()), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown or unsupported albumentations op '{op.name}'{hint}") from None
    except Exception as e:  # noqa: BLE001 - albumentations raises many kinds on bad arguments
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ValueError(f"bad arguments for '{op.name}': {'; '.join(lines)[:300]}") from None


def stop_epoch_index(cfg: AugmentConfig, total_epochs: int | None) -> int | None:
    """The first epoch (0-based) without the heavy ops, or None if they never stop."""
    if cfg.stop_epoch is None:
        return None
    if isinstance(cfg.stop_epoch, int):
        return cfg.stop_epoch
    if total_epochs is None:
        raise DetkitError("augment.stop_epoch is a fraction of the run but the number of epochs is not known",
                          hint="give stop_epoch as an epoch number, or pass total_epochs")
    return int(math.floor(cfg.stop_epoch * total_epochs + 1e-9))  # same convention as the train section


def heavy_ops_active(cfg: AugmentConfig, epoch: int | None, total_epochs: int | None) -> bool:
    """Whether photometric distortion, zoom-out and IoU crop run at ``epoch`` (always when epoch is None)."""
    if epoch is None:
        return True
    stop = stop_epoch_index(cfg, total_epochs)
    return stop is None or epoch < stop


def augment_config_from_dict(raw: Any, source: str | None = None) -> AugmentConfig:
    """Validate a plain ``augment:`` mapping, with one-line errors naming the field."""
    if raw is None:
        return AugmentConfig()
    if not isinstance(raw, dict):
        raise DetkitError(f"the augment section must be a mapping, got {type(raw).__name__}", path=source)
    try:
        return AugmentConfig.model_validate(raw)
    except ValidationError as e:
        raise DetkitError(f"invalid augment section: augment.{pydantic_error_line(e)}", path=source) from None
