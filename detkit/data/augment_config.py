"""The ``augment:`` recipe section: typed, validated settings of the train-time augmentation.

Defaults are the official RT-DETR train pipeline (docs/rt-detr.md §6.3); :mod:`detkit.data.augment` builds the
pipeline from these settings. ``stop_epoch`` (an epoch number, or a fraction of the run) switches the three heavy
ops off from that epoch on (RT-DETRv2's dynamic augmentation, docs/rt-detr.md §6.5).

DEIM's dense one-to-one matching (docs/training.md, "Dense one-to-one matching (DEIM)") adds ``mosaic`` (per
sample: four images in a 2x2 grid, then a random affine), ``mixup`` (per batch, blended with the previous image of
the batch) and ``policy_epochs: [e1, e2, e3]``, which schedules them with the heavy ops. Both are off by default
(``p: 0``), so a recipe without them trains exactly as before.

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

DEIM's dense one-to-one matching::

    augment:
      mosaic: {p: 0.5}
      mixup: {p: 0.5}
      policy_epochs: [4, 64, 117]
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
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


class MosaicAffineConfig(BaseModel):
    """The random affine applied to the whole mosaic canvas (rotation about its centre, translation, scale)."""

    model_config = ConfigDict(extra="forbid")
    degrees: float = Field(10.0, ge=0.0, le=180.0, description="rotation drawn from [-degrees, degrees]")
    translate: float = Field(0.1, ge=0.0, lt=1.0, description="shift per axis drawn from +-translate x the side")
    scale: tuple[float, float] = Field((0.5, 1.5), description="one scale factor for both axes, drawn uniformly")

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        _check_range(v)
        if v[0] <= 0:
            raise ValueError(f"scale factors must be positive, got [{v[0]}, {v[1]}]")
        return v


def _check_epoch_point(v: int | float | None) -> int | float | None:
    if isinstance(v, int) and v < 0:
        raise ValueError("an epoch number must be >= 0")
    if isinstance(v, float) and not 0.0 < v <= 1.0:
        raise ValueError("a fraction of the run must be in (0, 1]; use an int for an epoch number")
    return v


def _check_fill(v: int | tuple[int, int, int]) -> int | tuple[int, int, int]:
    values = (v,) if isinstance(v, int) else v
    if any(not 0 <= c <= 255 for c in values):
        raise ValueError(f"fill is a grey level or an RGB colour in 0..255, got {v}")
    return v


class MosaicConfig(_Op):
    """Per sample with probability ``p``: the sample and 3 other random train images, each resized to a short side
    of ``tile_size`` (null = half the shorter side of imgsz), in a 2x2 grid, then a random affine."""

    p: float = Field(0.0, ge=0.0, le=1.0, description="probability that a sample becomes a mosaic (0 = off)")
    tile_size: int | None = Field(None, ge=8, description="short side of each tile in pixels; null = imgsz / 2")
    affine: MosaicAffineConfig = Field(default_factory=MosaicAffineConfig)
    fill: int | tuple[int, int, int] = 0

    @field_validator("fill")
    @classmethod
    def _fill(cls, v: int | tuple[int, int, int]) -> int | tuple[int, int, int]:
        return _check_fill(v)


class MixupConfig(_Op):
    """Per batch with probability ``p``: every image blended with the previous one of the batch (the first with
    the last), ``beta x own + (1 - beta) x previous`` with ``beta ~ U(beta)``; the boxes of both are kept."""

    p: float = Field(0.0, ge=0.0, le=1.0, description="probability that a batch is mixed (0 = off)")
    beta: tuple[float, float] = Field((0.45, 0.55), description="range of the weight of each image's own pixels")

    @field_validator("beta")
    @classmethod
    def _beta(cls, v: tuple[float, float]) -> tuple[float, float]:
        _check_range(v)
        if not (0.0 <= v[0] and v[1] <= 1.0):
            raise ValueError(f"beta is a blending weight range within [0, 1], got [{v[0]}, {v[1]}]")
        return v


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
        None,
        description="epoch (int, 0-based) or fraction of the run (float in (0, 1], floored to an epoch) "
        "from which the heavy ops stop",
    )
    mosaic: MosaicConfig = Field(default_factory=MosaicConfig)
    mixup: MixupConfig = Field(default_factory=MixupConfig)
    policy_epochs: list[StrictInt | StrictFloat] | None = Field(
        None,
        description="DEIM's schedule [e1, e2, e3] (ints: epochs, floats: fractions of the run): before e1 "
        "no heavy ops and no mosaic; e1..e2 everything incl. mosaic and mixup; e2..e3 heavy ops without mosaic "
        "and mixup; from e3 none (e3 is the stop epoch)",
    )

    @field_validator("stop_epoch")
    @classmethod
    def _stop(cls, v: int | float | None) -> int | float | None:
        return _check_epoch_point(v)

    @field_validator("policy_epochs")
    @classmethod
    def _policy(cls, v: list[int | float] | None, info: Any) -> list[int | float] | None:
        if v is None:
            return v
        if len(v) != 3:
            raise ValueError(f"give three epochs [e1, e2, e3], got {len(v)}")
        kinds = {type(e) for e in v}
        if len(kinds) > 1:
            raise ValueError(f"give all three as epoch numbers (ints) or all as fractions of the run (floats), got {v}")
        for e in v:
            _check_epoch_point(e)
        if any(b < a for a, b in zip(v, v[1:])):
            raise ValueError(f"the epochs must not decrease, got {v}")
        stop = info.data.get("stop_epoch")
        if stop is not None and (type(stop) is not type(v[2]) or stop != v[2]):
            raise ValueError(
                f"stop_epoch ({stop}) and the last policy epoch ({v[2]}) disagree: e3 is the stop "
                "epoch of the heavy ops; set stop_epoch to e3 or to null"
            )
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


def _epoch_index(value: int | float, total_epochs: int | None, field: str) -> int:
    if isinstance(value, int):
        return value
    if total_epochs is None:
        raise DetkitError(
            f"augment.{field} is a fraction of the run but the number of epochs is not known",
            hint=f"give {field} as epoch numbers, or pass total_epochs",
        )
    return int(math.floor(value * total_epochs + 1e-9))  # same convention as the train section


def stop_epoch_index(cfg: AugmentConfig, total_epochs: int | None) -> int | None:
    """The first epoch (0-based) without the heavy ops, or None if they never stop."""
    if cfg.policy_epochs is not None:
        return _epoch_index(cfg.policy_epochs[2], total_epochs, "policy_epochs")
    if cfg.stop_epoch is None:
        return None
    return _epoch_index(cfg.stop_epoch, total_epochs, "stop_epoch")


@dataclass(frozen=True)
class EpochPolicy:
    """What runs in one epoch: the heavy ops (photometric distortion, zoom-out, IoU crop), mosaic, mixup.

    ``mosaic`` and ``mixup`` are true only when the op is both scheduled and enabled (``p > 0``).
    """

    heavy: bool
    mosaic: bool
    mixup: bool


def epoch_policy(cfg: AugmentConfig, epoch: int | None, total_epochs: int | None) -> EpochPolicy:
    """The policy of ``epoch`` (everything on when epoch is None, e.g. for previews).

    Without ``policy_epochs``, mosaic and mixup run while the heavy ops do (until ``stop_epoch``). With
    ``policy_epochs = [e1, e2, e3]``: before e1 none of them; from e1 all; from e2 the heavy ops only; from e3 none.
    """
    if epoch is None:
        heavy = dense = True
    elif cfg.policy_epochs is None:
        stop = stop_epoch_index(cfg, total_epochs)
        heavy = dense = stop is None or epoch < stop
    else:
        e1, e2, e3 = (_epoch_index(e, total_epochs, "policy_epochs") for e in cfg.policy_epochs)
        heavy = e1 <= epoch < e3
        dense = e1 <= epoch < e2
    return EpochPolicy(heavy, dense and cfg.mosaic.p > 0, dense and cfg.mixup.p > 0)


def heavy_ops_active(cfg: AugmentConfig, epoch: int | None, total_epochs: int | None) -> bool:
    """Whether photometric distortion, zoom-out and IoU crop run at ``epoch`` (always when epoch is None)."""
    return epoch_policy(cfg, epoch, total_epochs).heavy


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
