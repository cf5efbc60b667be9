"""COCO detection JSON: the in-memory form every format converts through, with structural checks.

Structural problems (wrong types, missing required keys) are errors raised here, naming the file and the
image/annotation id. Semantic problems (boxes outside images, unknown ids, ...) are the validator's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.utils.atomic import atomic_write_json
from detkit.utils.files import read_json
from detkit.utils.paths import resolve_inside


@dataclass
class CocoData:
    """A COCO detection file: ``images`` (id, file_name, width, height), ``annotations`` (id, image_id,
    category_id, bbox [x, y, w, h] in pixels, area, iscrowd) and ``categories`` (id, name)."""

    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    licenses: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.info:
            out["info"] = self.info
        if self.licenses:
            out["licenses"] = self.licenses
        out["images"] = self.images
        out["annotations"] = self.annotations
        out["categories"] = self.categories
        return out

    def class_map(self) -> ClassMap:
        return ClassMap.from_coco_categories(self.categories)

    def boxes_array(self) -> np.ndarray:
        """All annotation boxes as an ``[N, 4]`` float64 array (xywh pixels)."""
        if not self.annotations:
            return np.zeros((0, 4), dtype=np.float64)
        return np.asarray([a["bbox"] for a in self.annotations], dtype=np.float64).reshape(-1, 4)

    def annotations_by_image(self) -> dict[int, list[dict[str, Any]]]:
        by_image: dict[int, list[dict[str, Any]]] = {int(img["id"]): [] for img in self.images}
        for ann in self.annotations:
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
        return by_image


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_coco(raw: Any, source: str | Path) -> CocoData:
    """Check the structure of an already-parsed COCO dict and return it as :class:`CocoData`."""
    if not isinstance(raw, dict):
        raise DetkitError("COCO file must be a JSON object with 'images', 'annotations' and 'categories'", path=source)
    for key in ("images", "annotations", "categories"):
        if key not in raw:
            raise DetkitError(f"COCO file has no '{key}' list", path=source)
        if not isinstance(raw[key], list):
            raise DetkitError(f"COCO '{key}' must be a list, got {type(raw[key]).__name__}", path=source)

    for i, img in enumerate(raw["images"]):
        if not isinstance(img, dict):
            raise DetkitError(f"images[{i}] is not an object", path=source)
        if not _is_int(img.get("id")):
            raise DetkitError(f"images[{i}] has no integer 'id'", path=source)
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise DetkitError(f"image id {img['id']} has no 'file_name'", path=source)
        for k in ("width", "height"):
            if k in img and img[k] is not None and not (_is_int(img[k]) and img[k] > 0):
                raise DetkitError(f"image id {img['id']} has invalid '{k}' {img[k]!r}", path=source)

    for i, cat in enumerate(raw["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise DetkitError(f"categories[{i}] has no integer 'id'", path=source)
        if not isinstance(cat.get("name"), str) or not cat["name"]:
            raise DetkitError(f"category id {cat['id']} has no 'name'", path=source)

    for i, ann in enumerate(raw["annotations"]):
        if not isinstance(ann, dict):
            raise DetkitError(f"annotations[{i}] is not an object", path=source)
        aid = ann.get("id")
        if not _is_int(aid):
            raise DetkitError(f"annotations[{i}] has no integer 'id'", path=source)
        for k in ("image_id", "category_id"):
            if not _is_int(ann.get(k)):
                raise DetkitError(f"annotation id {aid} has no integer '{k}'", path=source)
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise DetkitError(
                f"annotation id {aid} has an invalid 'bbox' {bbox!r} (expected [x, y, w, h] numbers)", path=source
            )
        if "area" in ann and not _is_number(ann["area"]):
            raise DetkitError(
                f"annotation id {aid} has an invalid 'area' {ann['area']!r} (expected a number)", path=source
            )
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, bool):
            raise DetkitError(f"annotation id {aid} has invalid 'iscrowd' {crowd!r}", path=source)

    return CocoData(
        images=raw["images"],
        annotations=raw["annotations"],
        categories=raw["categories"],
        info=raw.get("info") or {},
        licenses=raw.get("licenses") or [],
    )


def read_coco(path: str | Path) -> CocoData:
    """Read and structurally check a COCO detection JSON file."""
    return parse_coco(read_json(path, what="COCO annotation file"), path)


def write_coco(path: str | Path, data: CocoData) -> Path:
    """Write atomically. Non-finite numbers are refused (JSON has no NaN)."""
    for ann in data.annotations:
        if not all(math.isfinite(float(v)) for v in ann["bbox"]):
            raise DetkitError(f"annotation id {ann['id']} has a non-finite bbox {ann['bbox']}", path=path)
    return atomic_write_json(path, data.to_dict(), indent=None)


def image_file(images_dir: Path, file_name: str, source: str | Path) -> Path:
    """Resolve an image's ``file_name`` inside its split's image folder (never outside it)."""
    return resolve_inside(images_dir, file_name, source=source, what="file_name")
