"""Train-time augmentation: the albumentations pipeline built from the ``augment:`` section
(:class:`detkit.data.augment_config.AugmentConfig`).

The default pipeline is the official RT-DETR one (docs/rt-detr.md §6.3), in this order::

    photometric_distort (p 0.5) → zoom_out (p 0.5, up to 4×, fill 0) → iou_crop (p 0.8) → sanitize (min 1 px)
    → hflip (p 0.5) → extra albumentations ops (none by default) → stretch resize to imgsz (OpenCV INTER_LINEAR)
    → sanitize

Sanitizing runs after every op that moves boxes (albumentations ``check_each_transform``): boxes are clipped to
the image and those narrower or lower than ``min_size`` pixels are dropped with their labels. From
``stop_epoch`` on the three heavy ops are left out. Evaluation (``train=False``) only resizes.

A mosaic sample (``augment.mosaic``, DEIM's dense one-to-one matching) is the 2x2 grid of
:func:`detkit.data.mosaic.paste_mosaic` through its own pipeline, without zoom-out and IoU crop::

    random affine (rotation, translation, scale; fill) → sanitize → photometric_distort → hflip → extra → resize

:class:`EpochAugmentation` picks, per sample, which of the two pipelines runs; ``epoch_policy`` says which ops an
epoch has (``stop_epoch`` / ``policy_epochs``).
Previews and augmented copies of a dataset are in :mod:`detkit.data.augment_offline`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from detkit.data.augment_config import (
    HEAVY_OPS,
    AugmentConfig,
    augment_config_from_dict,
    epoch_policy,
    make_extra_op,
)
from detkit.errors import DetkitError


class DetectionTransform:
    """``(uint8 HxWx3 RGB, boxes xyxy px [n, 4], int labels [n]) -> (uint8 image at imgsz, boxes, int64 labels)``.

    Boxes come out in pixels of the resized image. ``set_random_seed`` makes the next calls reproducible (each op
    gets its own stream derived from the seed).
    """

    def __init__(self, compose: Any, imgsz: tuple[int, int], op_names: Sequence[str]):
        self.compose = compose
        self.imgsz = imgsz
        self.op_names = tuple(op_names)

    def set_random_seed(self, seed: int) -> None:
        self.compose.set_random_seed(int(seed))
        # albumentations gives every op the same seed, which would tie their coin flips together
        for i, t in enumerate(self.compose.transforms):
            t.set_random_seed(int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0]))

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DetkitError(f"augmentation expects a uint8 HxWx3 RGB image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        if len(boxes) != len(labels):
            raise DetkitError(f"augmentation got {len(boxes)} boxes but {len(labels)} labels")
        boxes = np.clip(boxes, 0, [w, h, w, h])
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out = self.compose(image=np.ascontiguousarray(image), bboxes=boxes[valid], labels=labels[valid])
        out_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        out_labels = np.asarray(out["labels"]).reshape(-1).astype(np.int64)
        return out["image"], out_boxes, out_labels

    def __repr__(self) -> str:
        return f"DetectionTransform({' → '.join(self.op_names)})"


def build_transform(
    cfg: AugmentConfig | dict | None,
    imgsz: int | tuple[int, int] = (640, 640),
    train: bool = True,
    epoch: int | None = None,
    total_epochs: int | None = None,
    mosaic: bool = False,
) -> DetectionTransform:
    """The train pipeline for ``epoch`` (heavy ops dropped from ``stop_epoch`` on), or resize only for eval.

    ``mosaic=True``: the pipeline of a mosaic canvas (affine first, no zoom-out or IoU crop).
    """
    import albumentations as A

    from detkit.data.augment_ops import IoUCrop, PhotometricDistort, Stretch, ZoomOut

    if cfg is None:
        cfg = AugmentConfig()
    elif isinstance(cfg, dict):
        cfg = augment_config_from_dict(cfg)
    hw = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, np.integer)) else (int(imgsz[0]), int(imgsz[1]))
    if min(hw) <= 0:
        raise DetkitError(f"imgsz must be positive, got {imgsz}")
    ops: list[Any] = []
    names: list[str] = []
    if mosaic and not train:
        raise DetkitError("the mosaic pipeline is a train pipeline", params="mosaic")
    if train:
        heavy = epoch_policy(cfg, epoch, total_epochs).heavy
        if mosaic:
            ops.append(_mosaic_affine(cfg))
            names.append("mosaic affine")
        pd = cfg.photometric_distort
        if heavy:
            ops.append(PhotometricDistort(pd.brightness, pd.contrast, pd.saturation, pd.hue, p_each=pd.p_each, p=pd.p))
            names.append(HEAVY_OPS[0])
        if heavy and not mosaic:
            zo = cfg.zoom_out
            ic = cfg.iou_crop
            ops += [
                ZoomOut(zo.side_range, fill=zo.fill, p=zo.p),
                IoUCrop(
                    ic.min_scale, ic.max_scale, ic.min_aspect, ic.max_aspect, ic.min_iou_options, ic.trials, p=ic.p
                ),
            ]
            names += list(HEAVY_OPS[1:])
        ops.append(A.HorizontalFlip(p=cfg.hflip.p))
        names.append("hflip")
        for i, op in enumerate(cfg.extra):
            try:
                ops.append(make_extra_op(op))
            except ValueError as e:
                raise DetkitError(f"augment.extra.{i}: {e}") from None
            names.append(op.name)
    ops.append(Stretch(hw[0], hw[1]))
    names.append(f"resize {hw[0]}x{hw[1]}")
    bbox_params = A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        min_width=cfg.min_size,
        min_height=cfg.min_size,
        check_each_transform=True,
        clip=True,
    )
    compose = A.Compose(ops, bbox_params=bbox_params, seed=0)
    return DetectionTransform(compose, hw, names)


def _mosaic_affine(cfg: AugmentConfig) -> Any:
    """albumentations Affine on the whole canvas: rotation about the centre, independent x/y shifts, one scale."""
    import albumentations as A
    import cv2

    af = cfg.mosaic.affine
    fill = cfg.mosaic.fill if isinstance(cfg.mosaic.fill, int) else tuple(cfg.mosaic.fill)
    return A.Affine(
        rotate=(-af.degrees, af.degrees),
        translate_percent={"x": (-af.translate, af.translate), "y": (-af.translate, af.translate)},
        scale=tuple(af.scale),
        keep_ratio=True,
        interpolation=cv2.INTER_LINEAR,
        border_mode=cv2.BORDER_CONSTANT,
        fill=fill,
        rotate_method="largest_box",
        p=1.0,
    )


Loader = Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]]


class EpochAugmentation:
    """The augmentation of one epoch over a whole split, one sample at a time.

    Call with a sample's index, the number of images ``n``, the sample's seed and ``load(i) -> (uint8 HxWx3 RGB,
    boxes xyxy px, labels)``. While the epoch's policy allows mosaic, a sample becomes a mosaic with probability
    ``mosaic.p`` (with three other images drawn from the seed, :func:`detkit.data.mosaic.mosaic_picks`) and goes
    through the mosaic pipeline; otherwise it goes through the plain one exactly as :func:`build_transform` builds
    it. Everything is a pure function of the seed.
    """

    def __init__(
        self,
        cfg: AugmentConfig | dict | None,
        imgsz: int | tuple[int, int] = (640, 640),
        train: bool = True,
        epoch: int | None = None,
        total_epochs: int | None = None,
    ):
        cfg = AugmentConfig() if cfg is None else augment_config_from_dict(cfg) if isinstance(cfg, dict) else cfg
        self.cfg = cfg
        self.plain = build_transform(cfg, imgsz=imgsz, train=train, epoch=epoch, total_epochs=total_epochs)
        self.imgsz = self.plain.imgsz
        self.policy = epoch_policy(cfg, epoch, total_epochs) if train else None
        self.mosaic: DetectionTransform | None = None
        self.tile_size = cfg.mosaic.tile_size or max(1, round(min(self.imgsz) / 2))
        if self.policy is not None and self.policy.mosaic:
            self.mosaic = build_transform(
                cfg, imgsz=imgsz, train=True, epoch=epoch, total_epochs=total_epochs, mosaic=True
            )

    @property
    def op_names(self) -> tuple[str, ...]:
        """The plain pipeline's op names, preceded by the mosaic pipeline's when this epoch has mosaic."""
        if self.mosaic is None:
            return self.plain.op_names
        first = f"mosaic p={self.cfg.mosaic.p:g}: {', '.join(self.mosaic.op_names)}; else: {self.plain.op_names[0]}"
        return (first, *self.plain.op_names[1:])

    def __call__(self, index: int, n: int, seed: int, load: Loader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from detkit.data.mosaic import mosaic_picks, paste_mosaic

        picks = None if self.mosaic is None else mosaic_picks(seed, index, n, self.cfg.mosaic.p)
        if picks is None:
            self.plain.set_random_seed(seed)
            return self.plain(*load(index))
        canvas, boxes, labels = paste_mosaic([load(i) for i in picks], self.tile_size, self.cfg.mosaic.fill)
        self.mosaic.set_random_seed(seed)
        return self.mosaic(canvas, boxes, labels)
