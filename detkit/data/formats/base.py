"""The in-memory dataset every format reads into and writes from, and the image-header helper."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData
from detkit.data.formats.sidecar import Sidecar
from detkit.data.writer import DatasetWriter
from detkit.errors import DetkitError
from detkit.utils.paths import resolve_inside
from detkit.utils.progress import track

# Image suffixes recognised when a format lists images by scanning folders (the ultralytics set, minus video).
IMAGE_SUFFIXES = frozenset({".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"})


class InsideResolver:
    """``resolve_inside(root, rel)`` for many files: each folder is resolved once and only the file itself is
    checked for being a link, instead of resolving every path component of every file (20k images: ~50x faster)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._dirs: dict[str, str] = {}

    def __call__(self, rel: str, source: str | Path | None = None, what: str = "file_name") -> Path:
        if not isinstance(rel, str) or "\\" in rel:
            return resolve_inside(self.root, rel, source=source, what=what)
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or not pure.name or PureWindowsPath(rel).drive:
            return resolve_inside(self.root, rel, source=source, what=what)  # raises its usual message
        key, _, name = rel.rpartition("/")
        folder = self._dirs.get(key)
        if folder is None:
            folder = str(self.root if key in ("", ".") else resolve_inside(self.root, key, source=source, what=what))
            self._dirs[key] = folder
        path = folder + "/" + name
        return resolve_inside(self.root, rel, source=source, what=what) if os.path.islink(path) else Path(path)


def copy_many(pairs: Sequence[tuple[Path, Path]], link: bool, description: str, workers: int = 8) -> None:
    """Copy (or hard-link) image files with a few threads: file copies wait on I/O, not on Python."""
    from detkit.data.formats.copying import copy_image

    for dst_dir in {dst.parent for _, dst in pairs}:
        dst_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(workers) as pool:
        for _ in track(pool.map(lambda p: copy_image(p[0], p[1], link), pairs), description, total=len(pairs)):
            pass


@dataclass
class Origins:
    """Where each image and annotation of a split was read from, in the user's files, for messages and reports.

    ``files``: the user's files (label files, XML files, ...); ``image_file`` / ``ann_file``: per image / per
    annotation (in ``coco`` order) an index into ``files``; ``ann_pos``: the annotation's position in its file
    (``kind`` "line": 1-based line number, "object": 0-based object index), -1 when the annotation comes from the
    ``detkit_meta.json`` sidecar (crowd regions), whose path is ``sidecar``.
    """

    files: list[str]
    image_file: np.ndarray
    ann_file: np.ndarray
    ann_pos: np.ndarray
    kind: str
    sidecar: str | None = None

    def image(self, i: int) -> str:
        return self.files[int(self.image_file[i])]

    def annotation(self, k: int, ann: dict[str, Any]) -> tuple[str, str]:
        """(file, record) of annotation ``k``: e.g. ``("labels/train/a.txt", "line 3")``."""
        pos = int(self.ann_pos[k])
        if pos < 0:
            return (self.sidecar or self.files[int(self.ann_file[k])]), f"crowd region id {ann.get('id')}"
        return self.files[int(self.ann_file[k])], f"{self.kind} {pos}"


@dataclass
class SplitData:
    """One split: a COCO object whose ``file_name`` entries are relative to ``images_dir``."""

    coco: CocoData
    images_dir: Path
    # file_name -> actual file, where a format stores an image somewhere else than images_dir/file_name
    sources: dict[str, Path] = field(default_factory=dict)
    # the file the split was read from (named in error messages)
    source: Path | None = None
    # where each image / annotation came from, for formats with one file per image (None: ``source`` itself)
    origins: Origins | None = None

    _inside: InsideResolver | None = field(default=None, init=False, repr=False, compare=False)

    def image_path(self, file_name: str, source: str | Path | None = None) -> Path:
        if file_name in self.sources:
            return self.sources[file_name]
        if self._inside is None:
            self._inside = InsideResolver(self.images_dir)
        return self._inside(file_name, source if source is not None else self.images_dir)

    @property
    def num_images(self) -> int:
        return len(self.coco.images)

    @property
    def num_boxes(self) -> int:
        return len(self.coco.annotations)


@dataclass
class DatasetData:
    """A whole dataset in memory: the class map (model order) and COCO data per split."""

    class_map: ClassMap
    splits: dict[str, SplitData] = field(default_factory=dict)
    name: str = "dataset"

    def summary(self) -> dict[str, dict[str, int]]:
        return {s: {"images": d.num_images, "boxes": d.num_boxes} for s, d in self.splits.items()}


def image_size(path: Path | str) -> tuple[int, int]:
    """``(width, height)`` from the image header only (PIL reads no pixels); a clean error for non-images."""
    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except FileNotFoundError:
        raise DetkitError("image file not found", path=path) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DetkitError(
            f"not a readable image ({type(e).__name__})", hint="remove or replace the file", path=path
        ) from None


def image_sizes(paths: Sequence[Path | str], description: str = "reading image headers") -> np.ndarray:
    """``[N, 2]`` int64 array of (width, height) for many images, headers only."""
    out = np.zeros((len(paths), 2), dtype=np.int64)
    for i, p in enumerate(track(paths, description)):
        out[i] = image_size(p)
    return out


def list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively, not following folder links) as sorted POSIX paths relative to it."""
    if not folder.is_dir():
        return []
    top = str(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = os.path.relpath(dirpath, top)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        found.extend(
            prefix + f for f in filenames if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES
        )
    return sorted(found)


def write_detkit_dataset(
    data: DatasetData,
    out: str | Path,
    overwrite: bool = False,
    link: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write the canonical detkit layout (dataset.yaml + annotations/<split>.json + images/<split>/) atomically."""
    with DatasetWriter(
        out, data.class_map, name=data.name, overwrite=overwrite, link=link, extra_files=extra_files
    ) as writer:
        for split_name, split in data.splits.items():
            dst = InsideResolver(writer.images_dir(split_name))
            pairs = [(split.image_path(img["file_name"]), dst(img["file_name"])) for img in split.coco.images]
            copy_many(pairs, link, f"copying {split_name} images")
            coco = CocoData(
                images=split.coco.images,
                annotations=split.coco.annotations,
                categories=[],
                info=split.coco.info,
                licenses=split.coco.licenses,
            )
            writer.write_split(split_name, coco)
    return Path(out)


def number_text(v: float) -> str:
    """Shortest text that reads back to exactly ``v`` (integers without a trailing ``.0``)."""
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)


def assemble_split(
    images: list[dict[str, Any]],
    keys: list[str],
    row_image: np.ndarray,
    labels: np.ndarray,
    boxes: np.ndarray,
    class_map: ClassMap,
    meta: Sidecar | None,
    split: str,
    origins: Origins,
    row_extras: list[dict[str, Any]] | None = None,
) -> tuple[CocoData, Origins]:
    """Turn parsed label rows into COCO, restoring ids, areas and crowd regions from the sidecar.

    ``images`` (``file_name``, ``width``, ``height``) are in file order with label keys ``keys``; row ``r``
    belongs to ``images[row_image[r]]`` (rows sorted by image), has model label ``labels[r]`` and pixel box
    ``boxes[r]`` (xywh). Without sidecar data, ids are 1..N / 1..M in file order and ``area = w * h``.
    ``origins`` locates the images and rows in file order; the returned copy follows the COCO order.
    """
    n, m = len(images), len(labels)
    counts = np.bincount(row_image, minlength=n) if m else np.zeros(n, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    cat_ids = class_map.labels_to_category_ids(labels) if m else np.zeros(0, dtype=np.int64)
    areas = boxes[:, 2] * boxes[:, 3] if m else np.zeros(0)
    ann_ids = np.arange(1, m + 1, dtype=np.int64)
    image_ids = np.arange(1, n + 1, dtype=np.int64)
    crowd: list[dict[str, Any]] = []
    crowd_image: list[int] = []  # the image (file order) each crowd region belongs to
    split_meta = meta.splits.get(split) if meta is not None else None
    if split_meta:
        found = [split_meta.get(k) for k in keys]
        used_img = [e.id for e in found if e is not None]
        used_ann = [a for e in found if e is not None for a in e.ann_ids + [c["id"] for c in e.crowd]]
        next_img = max(used_img, default=0) + 1
        next_ann = max(used_ann, default=0) + 1
        for i, e in enumerate(found):
            s, c = int(starts[i]), int(counts[i])
            if e is None:  # an image added after the sidecar was written: fresh ids
                image_ids[i] = next_img
                next_img += 1
                ann_ids[s : s + c] = np.arange(next_ann, next_ann + c)
                next_ann += c
                continue
            image_ids[i] = e.id
            if e.file_name:
                images[i]["file_name"] = e.file_name
            if len(e.ann_ids) == c:
                ann_ids[s : s + c] = e.ann_ids
                areas[s : s + c] = e.areas
            else:  # labels edited after the sidecar was written: keep the boxes, give them fresh ids
                ann_ids[s : s + c] = np.arange(next_ann, next_ann + c)
                next_ann += c
            crowd.extend({**cr, "image_id": int(e.id), "iscrowd": 1} for cr in e.crowd)
            crowd_image.extend([i] * len(e.crowd))
    for img, iid in zip(images, image_ids.tolist()):
        img["id"] = iid
    annotations = [
        {"id": aid, "image_id": iid, "category_id": cid, "bbox": box, "area": area, "iscrowd": 0}
        for aid, iid, cid, box, area in zip(
            ann_ids.tolist(), image_ids[row_image].tolist(), cat_ids.tolist(), boxes.tolist(), areas.tolist()
        )
    ]
    if row_extras is not None:
        for ann, extra in zip(annotations, row_extras):
            ann.update(extra)
    ann_file, ann_pos = origins.ann_file, origins.ann_pos
    if crowd:
        annotations.extend(crowd)
        ann_file = np.concatenate([ann_file, origins.image_file[np.asarray(crowd_image, dtype=np.int64)]])
        ann_pos = np.concatenate([ann_pos, np.full(len(crowd), -1, dtype=np.int64)])
        by_id = np.argsort(
            np.fromiter((a["id"] for a in annotations), dtype=np.int64, count=len(annotations)), kind="stable"
        )
        annotations = [annotations[k] for k in by_id.tolist()]
        ann_file, ann_pos = ann_file[by_id], ann_pos[by_id]
    image_file = origins.image_file
    if split_meta:
        order = np.argsort(image_ids, kind="stable")
        images = [images[i] for i in order.tolist()]
        image_file = image_file[order]
    out_origins = Origins(origins.files, image_file, ann_file, ann_pos, origins.kind, origins.sidecar)
    return CocoData(images=images, annotations=annotations, categories=class_map.to_coco_categories()), out_origins


def split_for_writing(coco: CocoData) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[dict[str, Any]]]]:
    """Annotations per image id, plain objects and crowd regions apart."""
    plain: dict[int, list[dict[str, Any]]] = {int(img["id"]): [] for img in coco.images}
    crowd: dict[int, list[dict[str, Any]]] = {int(img["id"]): [] for img in coco.images}
    for ann in coco.annotations:
        (crowd if ann.get("iscrowd", 0) else plain).setdefault(int(ann["image_id"]), []).append(ann)
    return plain, crowd


def check_unique_stems(names: Sequence[str], split: str, fmt: str) -> None:
    """Label files are named after the image without its suffix: ``a.jpg`` and ``a.png`` would share one."""
    seen: dict[str, str] = {}
    for name in names:
        stem = os.path.splitext(name)[0]
        other = seen.setdefault(stem, name)
        if other != name:
            raise DetkitError(
                f"split '{split}': images {other!r} and {name!r} would share the {fmt} label file '{stem}'",
                hint="rename one of the images",
            )
