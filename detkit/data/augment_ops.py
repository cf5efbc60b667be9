"""The official RT-DETR train-time ops as albumentations transforms (importing this module imports albumentations).

They follow the torchvision ``transforms.v2`` semantics the reference training uses (docs/rt-detr.md §6.3):

- :class:`PhotometricDistort`: brightness, contrast, saturation, hue, each applied with ``p_each``; contrast before
  or after the colour ops; a random channel permutation with ``p_each``.
- :class:`ZoomOut`: the image is placed at a random offset on a canvas ``r`` times its size, ``r ~ U(side_range)``.
- :class:`IoUCrop`: SSD crop: draw a minimum IoU from ``min_iou_options`` (1.0 = no crop), try ``trials`` crops of
  scale U(min_scale, max_scale) per side with aspect in [min_aspect, max_aspect] that contain at least one box
  centre and overlap some box with IoU >= the minimum; boxes whose centre falls outside the crop are removed.
- :class:`Stretch`: the final non-aspect-preserving resize, through :func:`detkit.data.images.resize_image`
  so training sees exactly the resize that evaluation, prediction and export use.

Boxes are albumentations' internal format (normalised xyxy, extra columns carry the labels), so dropping a row
drops its label with it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never phone home on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from albumentations.core.type_definitions import Targets  # noqa: E402


class PhotometricDistort(A.ImageOnlyTransform):
    """torchvision's RandomPhotometricDistort on uint8 RGB images."""

    def __init__(
        self,
        brightness=(0.875, 1.125),
        contrast=(0.5, 1.5),
        saturation=(0.5, 1.5),
        hue=(-0.05, 0.05),
        p_each: float = 0.5,
        p: float = 0.5,
    ):
        super().__init__(p=p)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.p_each = p_each

    def get_params(self) -> dict[str, Any]:
        r = self.py_random

        def factor(rng: tuple[float, float]) -> float | None:
            return r.uniform(*rng) if r.random() < self.p_each else None

        perm = None
        params = {
            "brightness": factor(self.brightness),
            "contrast": factor(self.contrast),
            "saturation": factor(self.saturation),
            "hue": factor(self.hue),
            "contrast_first": r.random() < 0.5,
        }
        if r.random() < self.p_each:
            perm = [0, 1, 2]
            r.shuffle(perm)
        params["permutation"] = perm
        return params

    def apply(
        self,
        img: np.ndarray,
        brightness=None,
        contrast=None,
        saturation=None,
        hue=None,
        contrast_first=True,
        permutation=None,
        **params: Any,
    ) -> np.ndarray:
        # uint8 all the way (lookup tables and saturating OpenCV blends), rounding after each op like
        # torchvision does on uint8 images
        x = np.ascontiguousarray(img)
        if brightness is not None:
            x = cv2.LUT(x, _linear_lut(brightness, 0.0))
        if contrast is not None and contrast_first:
            x = _contrast(x, contrast)
        if saturation is not None:
            gray = cv2.cvtColor(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            x = cv2.addWeighted(x, saturation, gray, 1.0 - saturation, 0.0)
        if hue is not None:
            hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # uint8: H in [0, 180)
            shift = int(round(hue * 180.0))
            hsv[..., 0] = ((np.arange(256) + shift) % 180).astype(np.uint8)[hsv[..., 0]]
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if contrast is not None and not contrast_first:
            x = _contrast(x, contrast)
        if permutation is not None:
            x = np.ascontiguousarray(x[..., permutation])
        return x

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness", "contrast", "saturation", "hue", "p_each")


def _linear_lut(scale: float, offset: float) -> np.ndarray:
    return np.clip(np.round(np.arange(256, dtype=np.float64) * scale + offset), 0, 255).astype(np.uint8)


def _contrast(x: np.ndarray, f: float) -> np.ndarray:
    """Blend with the mean grey level (torchvision adjust_contrast)."""
    mean = cv2.mean(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY))[0]
    return cv2.LUT(x, _linear_lut(f, mean * (1.0 - f)))


class ZoomOut(A.DualTransform):
    """Place the image on a larger canvas (``r ~ U(side_range)`` times each side) filled with ``fill``."""

    _targets = (Targets.IMAGE, Targets.BBOXES)

    def __init__(self, side_range=(1.0, 4.0), fill: float | tuple[float, ...] = 0, p: float = 0.5):
        super().__init__(p=p)
        self.side_range = side_range
        self.fill_value = fill

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        r = self.py_random.uniform(*self.side_range)
        canvas_w, canvas_h = int(w * r), int(h * r)
        left = int((canvas_w - w) * self.py_random.random())
        top = int((canvas_h - h) * self.py_random.random())
        return {"canvas": (canvas_h, canvas_w), "offset": (top, left), "orig": (h, w)}

    def apply(self, img: np.ndarray, canvas=(0, 0), offset=(0, 0), **params: Any) -> np.ndarray:
        top, left = offset
        bottom, right = canvas[0] - top - img.shape[0], canvas[1] - left - img.shape[1]
        fill = self.fill_value if isinstance(self.fill_value, (int, float)) else tuple(self.fill_value)
        value = (fill,) * img.shape[2] if isinstance(fill, (int, float)) and img.ndim == 3 else fill
        return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value)

    def apply_to_bboxes(
        self, bboxes: np.ndarray, canvas=(1, 1), offset=(0, 0), orig=(1, 1), **params: Any
    ) -> np.ndarray:
        out = bboxes.copy()
        h, w = orig
        out[:, [0, 2]] = (bboxes[:, [0, 2]] * w + offset[1]) / canvas[1]
        out[:, [1, 3]] = (bboxes[:, [1, 3]] * h + offset[0]) / canvas[0]
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("side_range", "fill")


class IoUCrop(A.DualTransform):
    """SSD-style random crop with a minimum IoU against some box (torchvision RandomIoUCrop semantics)."""

    _targets = (Targets.IMAGE, Targets.BBOXES)

    def __init__(
        self,
        min_scale: float = 0.3,
        max_scale: float = 1.0,
        min_aspect: float = 0.5,
        max_aspect: float = 2.0,
        min_iou_options=(0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
        trials: int = 40,
        p: float = 0.8,
    ):
        super().__init__(p=p)
        self.min_scale, self.max_scale = min_scale, max_scale
        self.min_aspect, self.max_aspect = min_aspect, max_aspect
        self.min_iou_options = tuple(min_iou_options)
        self.trials = trials

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        boxes = np.asarray(data.get("bboxes", np.zeros((0, 4))), dtype=np.float64)[:, :4] * [w, h, w, h]
        no_crop = {"crop": (0, 0, w, h)}
        if len(boxes) == 0:
            return no_crop  # nothing can satisfy "contains a box centre": torchvision ends up not cropping
        r = self.py_random
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for _ in range(100):  # torchvision loops until success; "1.0" (no crop) ends it with probability 1/7 per draw
            min_iou = self.min_iou_options[int(r.random() * len(self.min_iou_options))]
            if min_iou >= 1.0:
                return no_crop
            for _ in range(self.trials):
                new_w = int(w * r.uniform(self.min_scale, self.max_scale))
                new_h = int(h * r.uniform(self.min_scale, self.max_scale))
                if new_h == 0 or not self.min_aspect <= new_w / new_h <= self.max_aspect:
                    continue
                left = int((w - new_w) * r.random())
                top = int((h - new_h) * r.random())
                right, bottom = left + new_w, top + new_h
                if new_w == 0:
                    continue
                inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
                if not inside.any():
                    continue
                b = boxes[inside]
                iw = np.clip(np.minimum(b[:, 2], right) - np.maximum(b[:, 0], left), 0, None)
                ih = np.clip(np.minimum(b[:, 3], bottom) - np.maximum(b[:, 1], top), 0, None)
                inter = iw * ih
                iou = inter / (area[inside] + new_w * new_h - inter)
                if iou.max() < min_iou:
                    continue
                return {"crop": (left, top, right, bottom)}
        return no_crop

    def apply(self, img: np.ndarray, crop=(0, 0, 0, 0), **params: Any) -> np.ndarray:
        left, top, right, bottom = crop
        return np.ascontiguousarray(img[top:bottom, left:right])

    def apply_to_bboxes(self, bboxes: np.ndarray, crop=(0, 0, 1, 1), shape=(1, 1), **params: Any) -> np.ndarray:
        h, w = shape[:2]
        left, top, right, bottom = crop
        if (left, top, right, bottom) == (0, 0, w, h) or len(bboxes) == 0:
            return bboxes
        px = bboxes[:, :4] * [w, h, w, h]
        cx, cy = (px[:, 0] + px[:, 2]) / 2, (px[:, 1] + px[:, 3]) / 2
        keep = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
        out = bboxes[keep].copy()
        cw, ch = right - left, bottom - top
        out[:, [0, 2]] = np.clip((px[keep][:, [0, 2]] - left) / cw, 0, 1)
        out[:, [1, 3]] = np.clip((px[keep][:, [1, 3]] - top) / ch, 0, 1)
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_scale", "max_scale", "min_aspect", "max_aspect", "min_iou_options", "trials")


class Stretch(A.DualTransform):
    """Resize to ``(height, width)`` without keeping the aspect ratio, with detkit's one resize function."""

    _targets = (Targets.IMAGE, Targets.BBOXES)

    def __init__(self, height: int, width: int, p: float = 1.0):
        super().__init__(p=p)
        self.height, self.width = height, width

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        from detkit.data.images import resize_image

        return resize_image(img, (self.height, self.width))

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes  # normalised coordinates do not change under a stretch

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("height", "width")


# Transforms that change the dtype, run user code, or need inputs other than the image and its boxes
# (masks, reference images, metadata): a detection pipeline cannot feed them.
_EXCLUDED = frozenset(
    {
        "Lambda",
        "Normalize",
        "ToFloat",
        "FromFloat",
        "Mosaic",
        "TextImage",
        "FDA",
        "HistogramMatching",
        "PixelDistributionAdaptation",
        "MaskDropout",
        "CropNonEmptyMaskIfExists",
        "RandomCropNearBBox",
        "ConstrainedCoarseDropout",
        "TimeMasking",
        "FrequencyMasking",
        "TimeReverse",
    }
)


def allowed_albumentations() -> dict[str, type]:
    """Albumentations transforms usable by name: public classes that change pixels only, or that also move
    bounding boxes, minus :data:`_EXCLUDED`."""
    out: dict[str, type] = {}
    for name in dir(A):
        if name.startswith("_") or name.startswith("Base") or name in _EXCLUDED:
            continue
        obj = getattr(A, name)
        if not isinstance(obj, type) or not issubclass(obj, A.BasicTransform):
            continue
        if obj in (A.BasicTransform, A.DualTransform, A.ImageOnlyTransform):
            continue
        targets = getattr(obj, "_targets", ())
        targets = targets if isinstance(targets, tuple) else (targets,)
        if issubclass(obj, A.ImageOnlyTransform) or Targets.BBOXES in targets:
            out[name] = obj
    return out


def make_albumentation(name: str, p: float, kwargs: dict[str, Any]) -> A.BasicTransform:
    """Instantiate an allowed albumentations transform by class name.

    Raises ``KeyError`` for names not allowed and ``ValueError`` for bad arguments (unknown names, invalid values,
    and values albumentations would silently adjust).
    """
    allowed = allowed_albumentations()
    if name not in allowed:
        raise KeyError(name)
    cls = allowed[name]
    if "p" in kwargs:
        raise ValueError("give the probability as the op's 'p', not inside kwargs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            try:
                transform = cls(**kwargs, p=p, strict=True)  # strict: unknown arguments are errors, not warnings
            except TypeError as e:
                if "strict" not in str(e):
                    raise
                transform = cls(**kwargs, p=p)
        except TypeError as e:
            raise ValueError(str(e).splitlines()[0]) from None
    adjusted = [w for w in caught if issubclass(w.category, UserWarning)]
    if adjusted:
        raise ValueError(str(adjusted[0].message).splitlines()[0])
    needs = set(transform.targets_as_params) - {"image", "images", "bboxes"}
    if needs:
        raise ValueError(f"needs inputs a detection pipeline does not have: {sorted(needs)}")
    return transform
