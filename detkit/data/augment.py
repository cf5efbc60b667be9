"""Train-time augmentation: the ``augment:`` recipe section and the albumentations pipeline built from it.

The default pipeline is the official RT-DETR one (docs/rtdetr.md §6.3), in this order::

    photometric_distort (p 0.5) → zoom_out (p 0.5, up to 4×, fill 0) → iou_crop (p 0.8) → sanitize (min 1 px)
    → hflip (p 0.5) → extra albumentations ops (none by default) → stretch resize to imgsz (OpenCV INTER_LINEAR)
    → sanitize

Sanitizing runs after every op that moves boxes (albumentations ``check_each_transform``): boxes are clipped to
the image and those narrower or lower than ``min_size`` pixels are dropped with their labels.
``stop_epoch`` (an epoch number, or a fraction of the run) switches the three heavy ops off from that epoch on
(RT-DETRv2's dynamic augmentation, docs/rtdetr.md §6.5). Evaluation (``train=False``) only resizes.

``extra`` adds any albumentations transform by class name (``{name: MotionBlur, p: 0.2, kwargs: {blur_limit: 7}}``);
names are looked up on the albumentations module and must be in its allowlist (pixel-only transforms and those
that move bounding boxes); nothing is ever evaluated.

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
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator, model_validator

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, image_file, read_coco
from detkit.data.dataset import DatasetSpec, SplitSpec, load_dataset
from detkit.data.writer import DatasetWriter
from detkit.errors import DetkitError
from detkit.utils.atomic import atomic_write_bytes
from detkit.utils.draw import draw_boxes
from detkit.utils.files import read_yaml
from detkit.utils.progress import track

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

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
        None, description="epoch (int, 0-based) or fraction of the run (float in (0, 1], floored to an epoch) from which the heavy ops stop"
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
                _make_extra(op)  # the name is in the allowlist and albumentations accepts the arguments
            except ValueError as e:
                raise ValueError(f"[{i}] {e}") from None
        return ops


def _make_extra(op: ExtraOp) -> Any:
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

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
) -> DetectionTransform:
    """The train pipeline for ``epoch`` (heavy ops dropped from ``stop_epoch`` on), or resize only for eval."""
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
    if train:
        if heavy_ops_active(cfg, epoch, total_epochs):
            pd = cfg.photometric_distort
            zo = cfg.zoom_out
            ic = cfg.iou_crop
            ops += [
                PhotometricDistort(pd.brightness, pd.contrast, pd.saturation, pd.hue, p_each=pd.p_each, p=pd.p),
                ZoomOut(zo.side_range, fill=zo.fill, p=zo.p),
                IoUCrop(ic.min_scale, ic.max_scale, ic.min_aspect, ic.max_aspect, ic.min_iou_options, ic.trials, p=ic.p),
            ]
            names += list(HEAVY_OPS)
        ops.append(A.HorizontalFlip(p=cfg.hflip.p))
        names.append("hflip")
        for i, op in enumerate(cfg.extra):
            try:
                ops.append(_make_extra(op))
            except ValueError as e:
                raise DetkitError(f"augment.extra.{i}: {e}") from None
            names.append(op.name)
    ops.append(Stretch(hw[0], hw[1]))
    names.append(f"resize {hw[0]}x{hw[1]}")
    bbox_params = A.BboxParams(format="pascal_voc", label_fields=["labels"], min_width=cfg.min_size, min_height=cfg.min_size,
                               check_each_transform=True, clip=True)
    compose = A.Compose(ops, bbox_params=bbox_params, seed=0)
    return DetectionTransform(compose, hw, names)


def augment_config_from_dict(raw: Any, source: str | None = None) -> AugmentConfig:
    """Validate a plain ``augment:`` mapping, with one-line errors naming the field."""
    from pydantic import ValidationError

    from detkit.utils.files import pydantic_error_line

    if raw is None:
        return AugmentConfig()
    if not isinstance(raw, dict):
        raise DetkitError(f"the augment section must be a mapping, got {type(raw).__name__}", path=source)
    try:
        return AugmentConfig.model_validate(raw)
    except ValidationError as e:
        raise DetkitError(f"invalid augment section: augment.{pydantic_error_line(e)}", path=source) from None

# --------------------------------------------------------------------------- recipes, previews, augmented copies


def load_augment_config(source: str | Path) -> tuple[AugmentConfig, int | None]:
    """The ``augment`` section of ``recipe:NAME``, of a recipe YAML, or a YAML file holding the section itself.

    Returns the config and the recipe's training ``imgsz`` when the source is a full recipe (else None).
    """
    text = str(source)
    if text.startswith("recipe:"):
        return _from_recipe(text)
    path = Path(source)
    raw = read_yaml(path, what="recipe file")
    if isinstance(raw, dict) and "augment" in raw:
        if set(raw) - {"augment"}:  # a full recipe: resolve it (base inheritance, schema) when the schema knows augment
            try:
                return _from_recipe(path)
            except DetkitError as e:
                if "no augment section" not in e.message:
                    raise
        return augment_config_from_dict(raw["augment"], source=str(path)), None
    if isinstance(raw, dict) and raw and set(raw) <= set(AugmentConfig.model_fields):
        return augment_config_from_dict(raw, source=str(path)), None
    if isinstance(raw, dict) and raw and set(raw) & {"base", "model", "train"}:
        return _from_recipe(path)
    raise DetkitError("no 'augment' section found", hint="give a recipe with an augment: section, the section itself, or recipe:NAME",
                      path=path)


def _from_recipe(source: str | Path) -> tuple[AugmentConfig, int | None]:
    from detkit.config.recipe import resolve_recipe

    recipe = resolve_recipe(source)
    section = getattr(recipe, "augment", None)
    if section is None:
        raise DetkitError(f"recipe {source} has no augment section",
                          hint="add an augment: section to the recipe, or pass a YAML file holding the section")
    cfg = section if isinstance(section, AugmentConfig) else augment_config_from_dict(
        section.model_dump() if isinstance(section, BaseModel) else section, source=str(source))
    imgsz = getattr(getattr(recipe, "train", None), "imgsz", None)
    return cfg, int(imgsz) if imgsz else None


@dataclass
class _Sample:
    image_id: int
    path: Path
    boxes: np.ndarray  # float [n, 4] xyxy px
    codes: np.ndarray  # int64 [n]: label * 2 + iscrowd, so crowd flags travel through the pipeline
    size_wh: tuple[int, int]
    file_name: str


def _read_samples(split: SplitSpec, class_map: ClassMap) -> list[_Sample]:
    coco = read_coco(split.annotations)
    by_image = coco.annotations_by_image()
    samples = []
    for img in coco.images:
        iid = int(img["id"])
        anns = by_image.get(iid, [])
        xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        cids = np.asarray([a["category_id"] for a in anns], dtype=np.int64)
        try:
            labels = class_map.category_ids_to_labels(cids) if len(cids) else np.zeros(0, np.int64)
        except DetkitError as e:
            raise DetkitError(f"image id {iid}: {e.message}", hint="run `detkit data validate`", path=split.annotations) from None
        crowd = np.asarray([int(a.get("iscrowd", 0)) for a in anns], dtype=np.int64)
        path = image_file(split.images, img["file_name"], split.annotations)
        samples.append(_Sample(iid, path, xyxy, labels * 2 + crowd, (int(img.get("width") or 0), int(img.get("height") or 0)),
                               img["file_name"]))
    return samples


def _seed_of(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def _load_rgb(path: Path) -> np.ndarray:
    from detkit.models.preprocess import load_image

    return load_image(path)


def preview_augmentations(
    dataset: str | Path | DatasetSpec,
    cfg: AugmentConfig | dict | None,
    n: int,
    out: str | Path,
    split: str = "train",
    seed: int = 0,
    imgsz: int | tuple[int, int] = 640,
    epoch: int | None = None,
    total_epochs: int | None = None,
) -> Path:
    """Write a PNG grid of ``n`` augmented samples (random images of ``split``) with boxes and class names."""
    import cv2

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DetkitError(f"--preview must be a positive number of samples, got {n!r}")
    ds = dataset if isinstance(dataset, DatasetSpec) else load_dataset(dataset)
    samples = _read_samples(ds.split(split), ds.class_map)
    if not samples:
        raise DetkitError(f"split '{split}' has no images to augment", path=ds.split(split).annotations)
    transform = build_transform(cfg, imgsz=imgsz, train=True, epoch=epoch, total_epochs=total_epochs)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(samples), size=n, replace=n > len(samples))
    tiles = []
    for k, idx in enumerate(track(picks, "augmenting")):
        s = samples[int(idx)]
        transform.set_random_seed(_seed_of(seed, k, int(idx)))
        image, boxes, codes = transform(_load_rgb(s.path), s.boxes, s.codes)
        tiles.append(draw_boxes(image, boxes, codes // 2, ds.class_map.names))
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    h, w = tiles[0].shape[:2]
    pad = 4
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = tile
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise DetkitError("the preview is written as PNG: give a file name ending in .png", path=out)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV failure
        raise DetkitError("could not encode the preview PNG", path=out)
    return atomic_write_bytes(out, buf.tobytes())


def write_augmented_dataset(
    dataset: str | Path | DatasetSpec,
    cfg: AugmentConfig | dict | None,
    out: str | Path,
    copies: int,
    split: str = "train",
    seed: int = 0,
    imgsz: int | tuple[int, int] | None = None,
    overwrite: bool = False,
    jpeg_quality: int = 95,
) -> dict[str, Any]:
    """Write ``copies`` augmented versions of every image of ``split`` as a dataset (that one split) at ``out``.

    Each copy is stretched back to its source image's size unless ``imgsz`` is given. Boxes, labels and crowd
    flags follow the augmentation; ``area`` becomes the box area (segmentations are not carried).
    """
    import cv2

    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
        raise DetkitError(f"--copies must be a positive number of augmented copies per image, got {copies!r}")
    ds = dataset if isinstance(dataset, DatasetSpec) else load_dataset(dataset)
    samples = _read_samples(ds.split(split), ds.class_map)
    if not samples:
        raise DetkitError(f"split '{split}' has no images to augment", path=ds.split(split).annotations)
    cfg = augment_config_from_dict(cfg) if not isinstance(cfg, AugmentConfig) else cfg
    transforms: dict[tuple[int, int], DetectionTransform] = {}
    coco = CocoData(info={"description": f"{ds.name}: {copies} augmented copies of split '{split}' (seed {seed})"})
    cat_ids = np.asarray(ds.class_map.category_ids, dtype=np.int64)
    with DatasetWriter(out, ds.class_map, name=f"{ds.name}-augmented", overwrite=overwrite) as writer:
        for idx, s in enumerate(track(samples, f"augmenting {split}")):
            image = _load_rgb(s.path)
            hw = (image.shape[0], image.shape[1]) if imgsz is None else (
                (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, np.integer)) else tuple(imgsz))
            if hw not in transforms:
                transforms[hw] = build_transform(cfg, imgsz=hw, train=True)
            transform = transforms[hw]
            stem = Path(s.file_name).with_suffix("")
            for k in range(copies):
                transform.set_random_seed(_seed_of(seed, idx, k))
                aug, boxes, codes = transform(image, s.boxes, s.codes)
                suffix = ".png" if s.path.suffix.lower() == ".png" else ".jpg"
                file_name = f"{stem.as_posix()}_aug{k}{suffix}"
                params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix == ".jpg" else []
                ok, buf = cv2.imencode(suffix, cv2.cvtColor(aug, cv2.COLOR_RGB2BGR), params)
                if not ok:  # pragma: no cover - OpenCV failure
                    raise DetkitError("could not encode an augmented image", path=s.path)
                writer.image_path(split, file_name).write_bytes(buf.tobytes())
                image_id = len(coco.images) + 1
                coco.images.append({"id": image_id, "file_name": file_name, "width": int(aug.shape[1]), "height": int(aug.shape[0]),
                                    "source_image_id": s.image_id, "augment_copy": k})
                xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
                for box, code in zip(xywh, codes):
                    coco.annotations.append({"id": len(coco.annotations) + 1, "image_id": image_id,
                                             "category_id": int(cat_ids[int(code) // 2]), "bbox": [float(v) for v in box],
                                             "area": float(box[2] * box[3]), "iscrowd": int(code) % 2})
        writer.write_split(split, coco)
    return {"dataset": str(Path(out) / "dataset.yaml"), "split": split, "images": len(coco.images),
            "boxes": len(coco.annotations), "source_images": len(samples), "copies": copies}
