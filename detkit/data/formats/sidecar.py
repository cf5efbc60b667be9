"""``detkit_meta.json``: what YOLO and VOC cannot carry, kept beside them so round trips are lossless.

Other tools ignore the file. It records the class map (names and original COCO category ids), the dataset
name and, per split and per image (keyed by the image's label key: the image path for YOLO, the XML stem for
VOC)::

    {"id": 7,                        # the COCO image id
     "file_name": "a/b.jpg",         # the original COCO file_name (only where it differs from the key)
     "ann_ids": [3, 4],              # COCO annotation ids of the label lines / XML objects, in order
     "areas": [120.0, 88.5],         # their COCO areas (e.g. segmentation areas, not always w*h)
     "crowd": [{"id": 5, "category_id": 2, "bbox": [x, y, w, h], "area": 30.0}]}

Crowd regions (``iscrowd=1``) are *not* written as YOLO label lines or VOC objects (YOLO has no ignore flag and
VOC's ``difficult`` is a different concept: "hard to recognise", not "a group of objects"); they live only here.
Without the sidecar, readers fall back to documented defaults (ids 1..N in file order, category ids 1..K in
class order, no crowd regions, area = w*h).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.utils.atomic import atomic_write_json
from detkit.utils.files import read_json

SIDECAR_FILE = "detkit_meta.json"
SIDECAR_VERSION = 1


@dataclass
class ImageMeta:
    id: int
    ann_ids: list[int]
    areas: list[float]
    crowd: list[dict[str, Any]]
    file_name: str | None = None


@dataclass
class Sidecar:
    class_map: ClassMap
    name: str
    splits: dict[str, dict[str, ImageMeta]]
    path: str | None = None  # the file it was read from (named in reports)

    def image(self, split: str, key: str) -> ImageMeta | None:
        return self.splits.get(split, {}).get(key)


def image_meta_entry(
    image: dict[str, Any], anns: list[dict[str, Any]], crowd: list[dict[str, Any]], key: str
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": int(image["id"]),
        "ann_ids": [int(a["id"]) for a in anns],
        "areas": [float(a.get("area", 0.0)) for a in anns],
    }
    if image["file_name"] != key:
        entry["file_name"] = image["file_name"]
    if crowd:
        entry["crowd"] = [
            {
                "id": int(a["id"]),
                "category_id": int(a["category_id"]),
                "bbox": [float(v) for v in a["bbox"]],
                "area": float(a.get("area", 0.0)),
            }
            for a in crowd
        ]
    return entry


def write_sidecar(
    folder: Path, fmt: str, class_map: ClassMap, name: str, splits: dict[str, dict[str, dict[str, Any]]]
) -> Path:
    return atomic_write_json(
        folder / SIDECAR_FILE,
        {"detkit_meta": SIDECAR_VERSION, "format": fmt, "name": name, "classes": class_map.to_dict(), "splits": splits},
        indent=None,
    )


def read_sidecar(folder: Path) -> Sidecar | None:
    """The sidecar in ``folder``, or ``None`` when there is none. A damaged sidecar is an error, never guessed."""
    path = folder / SIDECAR_FILE
    if not path.is_file():
        return None
    raw = read_json(path, what="detkit sidecar")
    hint = f"delete {SIDECAR_FILE} to fall back to the format's defaults"
    if not isinstance(raw, dict) or raw.get("detkit_meta") != SIDECAR_VERSION:
        raise DetkitError(f"not a detkit sidecar of version {SIDECAR_VERSION}", hint=hint, path=path)
    try:
        class_map = ClassMap.from_dict(raw["classes"])
        splits: dict[str, dict[str, ImageMeta]] = {}
        for split, images in raw["splits"].items():
            splits[str(split)] = {
                str(key): ImageMeta(
                    id=int(e["id"]),
                    ann_ids=[int(v) for v in e["ann_ids"]],
                    areas=[float(v) for v in e["areas"]],
                    crowd=[
                        {
                            "id": int(c["id"]),
                            "category_id": int(c["category_id"]),
                            "bbox": [float(v) for v in c["bbox"]],
                            "area": float(c["area"]),
                        }
                        for c in e.get("crowd", [])
                    ],
                    file_name=e.get("file_name"),
                )
                for key, e in images.items()
            }
    except DetkitError as e:
        raise DetkitError(e.message, hint=hint, path=path) from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DetkitError(f"damaged detkit sidecar ({type(e).__name__}: {e})", hint=hint, path=path) from None
    return Sidecar(class_map=class_map, name=str(raw.get("name", "dataset")), splits=splits, path=str(path))
