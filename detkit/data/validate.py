"""A datumaro-style anomaly report over a dataset in any supported format, and ``fix`` to write a cleaned copy.

``validate_dataset(path)`` checks a detkit ``dataset.yaml`` (every split), a plain COCO JSON file, a folder of
COCO JSON files, a YOLO or a Pascal VOC dataset, and returns a :class:`ValidationReport` of findings, each naming
the split, the user's file (COCO JSON, YOLO label file, VOC XML or image file) and the record in it (annotation /
image id, label line, XML object). ``validate_data`` runs the same rules on data already read (``detkit data
convert`` checks what it read with them before writing anything, and ``drop_invalid`` removes the records they
reject).

Errors (the data is wrong; ``detkit data validate`` exits non-zero, ``detkit data convert`` refuses):
    missing, unreadable or truncated image files, image sizes in the labels that differ from the file, image
    ``file_name`` escaping the image folder, duplicate image or annotation ids, annotations pointing to unknown
    images or categories, boxes that are non-finite, of non-positive size or entirely outside their image, areas
    that are non-finite or negative, YOLO
    coordinates (cx, cy, w, h) outside [0, 1] (ultralytics refuses such label files), COCO categories that differ
    from dataset.yaml's classes.
Warnings (worth a look, not wrong by themselves):
    images present in the folder but not listed, images listed twice, images without width/height, boxes partly
    outside their image, categories declared but unused, images with more boxes than the model's query count
    (``max_boxes``), class imbalance above ``imbalance_ratio`` (most / least frequent class), empty splits.

Every box check is vectorised over the split's ``[N, 4]`` box array. ``fix_dataset`` applies the fix noted on each
finding (drop bad images and annotations, clip boxes, fill or correct image sizes, give duplicate annotation ids
new ids) and writes the result through :class:`~detkit.data.writer.DatasetWriter`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, read_coco
from detkit.data.dataset import load_dataset
from detkit.data.formats.base import DatasetData, InsideResolver, Origins, copy_many, list_images, number_text
from detkit.data.formats.coco_folder import guess_images_dir, is_detkit_dataset, split_name_of
from detkit.data.formats.detect import LAYOUTS, detect_format
from detkit.data.formats.reader import read_source
from detkit.data.writer import DatasetWriter
from detkit.errors import DetkitError
from detkit.utils.progress import track

ERROR, WARNING = "error", "warning"
BOX_TOLERANCE = 1e-3  # pixels a box may stick out of its image before it counts as outside
NORMALISED_TOLERANCE = 1e-6  # how far a YOLO coordinate may leave [0, 1] (rounding of written files)


@dataclass
class Finding:
    severity: str
    check: str
    split: str
    file: str
    message: str
    image_id: int | None = None
    ann_id: int | None = None
    fix: str | None = None  # what fix_dataset does about it (None: nothing, reported only)
    record: str | None = None  # the record in ``file``: "annotation id 7", "line 3", "object 0", "image id 2"
    # positions for fix_dataset (not part of the report)
    _image_index: int | None = field(default=None, repr=False)
    _ann_index: int | None = field(default=None, repr=False)
    _value: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def line(self) -> str:
        """``file: record: message``, one line in the user's terms."""
        return ": ".join(p for p in (self.file, self.record, self.message) if p)


@dataclass
class SplitSource:
    name: str
    coco: CocoData
    annotations: Path  # the file the split was read from (COCO JSON, YOLO data.yaml, VOC ImageSets list)
    images_dir: Path | None
    fmt: str = "coco"
    sources: dict[str, Path] = field(default_factory=dict)  # file_name -> file, where not images_dir/file_name
    origins: Origins | None = None  # where each image / annotation came from (formats with a file per image)

    _inside: InsideResolver | None = field(default=None, init=False, repr=False)

    def image_path(self, file_name: str) -> Path:
        if file_name in self.sources:
            return self.sources[file_name]
        assert self.images_dir is not None
        if self._inside is None:
            self._inside = InsideResolver(self.images_dir)
        return self._inside(file_name, source=self.annotations)

    def where_image(self, i: int) -> tuple[str, str]:
        img = self.coco.images[i]
        file = self.origins.image(i) if self.origins is not None else str(self.annotations)
        return file, f"image id {img['id']}"

    def where_annotation(self, k: int) -> tuple[str, str]:
        ann = self.coco.annotations[k]
        if self.origins is not None:
            return self.origins.annotation(k, ann)
        return str(self.annotations), f"annotation id {ann['id']}"


@dataclass
class ValidationReport:
    source: Path
    class_map: ClassMap
    splits: dict[str, SplitSource]
    findings: list[Finding]
    settings: dict[str, Any]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts(self) -> dict[str, dict[str, int]]:
        """``{check: {"severity", "count"}}`` in first-seen order."""
        out: dict[str, dict[str, Any]] = {}
        for f in self.findings:
            out.setdefault(f.check, {"severity": f.severity, "count": 0})["count"] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "settings": self.settings,
            "splits": {
                s: {"images": len(v.coco.images), "boxes": len(v.coco.annotations)} for s, v in self.splits.items()
            },
            "checks": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
        }


# ---------------------------------------------------------------------------------------------- loading


def sources_of(data: DatasetData, source: Path, fmt: str) -> dict[str, SplitSource]:
    """The validator's view of data read by any format reader."""
    return {
        name: SplitSource(
            name,
            split.coco,
            split.source if split.source is not None else source,
            split.images_dir,
            fmt,
            split.sources,
            split.origins,
        )
        for name, split in data.splits.items()
    }


def _load_sources(path: Path, images: Path | None) -> tuple[ClassMap, dict[str, SplitSource], list[Finding]]:
    findings: list[Finding] = []
    if not path.exists():
        raise DetkitError("dataset not found", path=path)
    try:
        fmt: str | None = detect_format(path)
    except DetkitError:
        fmt = None
    # a detkit dataset.yaml (fmt None: a YAML file that does not parse; load_dataset names the problem)
    if fmt in ("coco", None) and (is_detkit_dataset(path) or path.suffix in (".yaml", ".yml")):
        if images is not None:
            raise DetkitError("images applies to a plain COCO JSON, not to a dataset.yaml", path=path, params="images")
        spec = load_dataset(path)
        splits: dict[str, SplitSource] = {}
        for name, s in spec.splits.items():
            coco = read_coco(s.annotations)
            if coco.categories:
                mine = {int(c["id"]): str(c["name"]) for c in coco.categories}
                theirs = dict(zip(spec.class_map.category_ids, spec.class_map.names))
                if mine != theirs:
                    findings.append(
                        Finding(
                            ERROR,
                            "categories_mismatch",
                            name,
                            str(s.annotations),
                            f"COCO categories {sorted(mine.items())} differ from dataset.yaml's classes "
                            f"{sorted(theirs.items())}",
                        )
                    )
            splits[name] = SplitSource(name, coco, s.annotations, s.images)
        return spec.class_map, splits, findings
    if fmt is not None and (path.is_dir() or fmt != "coco"):  # a COCO folder, YOLO, VOC: read as convert reads it
        data, fmt = read_source(path, fmt, images=images)
        return data.class_map, sources_of(data, path, fmt), findings
    if path.is_dir():
        raise DetkitError("no dataset in this folder", hint=LAYOUTS, path=path)
    if path.suffix.lower() != ".json":
        raise DetkitError("expected a dataset.yaml or a COCO .json file", path=path)
    coco = read_coco(path)
    if not coco.categories:
        raise DetkitError("COCO file has no categories", path=path)
    try:
        class_map = ClassMap.from_coco_categories(coco.categories)
    except DetkitError as e:
        raise DetkitError(e.message, path=path) from None
    split = split_name_of(path.stem)
    if images is None:
        try:
            images = guess_images_dir(path, split)
        except DetkitError:
            findings.append(
                Finding(
                    WARNING,
                    "no_image_folder",
                    split,
                    str(path),
                    "image folder not found: image files were not checked (pass --images DIR)",
                )
            )
    elif not images.is_dir():
        raise DetkitError("image folder not found", path=images)
    return class_map, {split: SplitSource(split, coco, path, images.resolve() if images else None)}, findings


# ---------------------------------------------------------------------------------------------- image files


def _probe(path: Path, decode: bool) -> tuple[str, int, int]:
    """('ok' | 'missing' | 'unreadable' | 'truncated', width, height)."""
    if not path.is_file():
        return "missing", 0, 0
    try:
        with Image.open(path) as im:
            w, h = im.size
            if decode:
                try:
                    im.load()
                except (OSError, ValueError, SyntaxError):
                    return "truncated", w, h
            return "ok", w, h
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return "unreadable", 0, 0


def _check_image_files(src: SplitSource, decode: bool, workers: int) -> tuple[list[Finding], set[Path]]:
    """Findings about the split's image files, and the files it lists."""
    out: list[Finding] = []
    images, split = src.coco.images, src.name
    labels = {"coco": "JSON", "voc": "XML"}.get(src.fmt, "labels")
    paths: list[Path | None] = []
    for i, img in enumerate(images):
        try:
            paths.append(src.image_path(img["file_name"]))
        except DetkitError as e:
            paths.append(None)
            file, record = src.where_image(i)
            message = e.message.removeprefix(f"{src.annotations}: ")
            out.append(
                Finding(
                    ERROR,
                    "path_escapes_root",
                    split,
                    file,
                    message,
                    img["id"],
                    fix="drop image",
                    record=record,
                    _image_index=i,
                )
            )
    todo = [(i, p) for i, p in enumerate(paths) if p is not None]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(
            track(pool.map(lambda ip: _probe(ip[1], decode), todo), f"checking {split} image files", total=len(todo))
        )

    def add(i: int, severity: str, check: str, message: str, fix: str, value: Any = None) -> None:
        # named by the file listing the image (COCO JSON, VOC XML; YOLO: the image itself); the message names the image
        file, record = src.where_image(i)
        out.append(
            Finding(
                severity,
                check,
                split,
                file,
                message,
                images[i]["id"],
                fix=fix,
                record=record,
                _image_index=i,
                _value=value,
            )
        )

    for (i, p), (status, w, h) in zip(todo, results):
        img = images[i]
        if status == "missing":
            add(i, ERROR, "missing_image", f"image file {p} does not exist", "drop image")
        elif status == "unreadable":
            add(i, ERROR, "unreadable_image", f"image file {p} is not a readable image", "drop image")
        elif status == "truncated":
            add(i, ERROR, "truncated_image", f"image file {p} is truncated or corrupt", "drop image")
        elif not img.get("width") or not img.get("height"):
            add(
                i,
                WARNING,
                "missing_size",
                f"no width/height in the {labels} (image file {p} is {w}x{h})",
                "set size from file",
                (w, h),
            )
        elif (img["width"], img["height"]) != (w, h):
            said = f"{img['width']}x{img['height']}"
            add(
                i,
                ERROR,
                "size_mismatch",
                f"the {labels} says {said} but image file {p} is {w}x{h}",
                "set size from file",
                (w, h),
            )
    return out, {p for p in paths if p is not None}


def _check_unlisted(splits: dict[str, SplitSource], listed: set[Path]) -> list[Finding]:
    """Image files in a split's image folder that no split lists (splits may share a folder: VOC's JPEGImages)."""
    out: list[Finding] = []
    seen: set[Path] = set()
    for src in splits.values():
        if src.images_dir is None or src.images_dir.resolve() in seen:
            continue
        folder = src.images_dir.resolve()
        seen.add(folder)
        inside = InsideResolver(folder)
        for rel in list_images(folder):
            p = inside(rel)
            if p not in listed:
                listed.add(p)  # reported once, even when it lies in several splits' folders
                out.append(
                    Finding(
                        WARNING,
                        "unlisted_image",
                        src.name,
                        str(src.images_dir / rel),
                        "image file is not listed in the annotations",
                        fix="not copied",
                    )
                )
    return out


# ---------------------------------------------------------------------------------------------- annotations


def _duplicates(values: np.ndarray) -> np.ndarray:
    """Positions of every occurrence after the first of a repeated value."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(values, return_index=True)
    mask = np.ones(values.size, dtype=bool)
    mask[first] = False
    return np.flatnonzero(mask)


def _check_annotations(
    src: SplitSource, class_map: ClassMap, max_boxes: int, sizes_from_files: dict[int, tuple[int, int]]
) -> list[Finding]:
    out: list[Finding] = []
    coco, split = src.coco, src.name
    images, anns = coco.images, coco.annotations

    def on_image(severity: str, check: str, i: int, message: str, fix: str | None) -> None:
        file, record = src.where_image(i)
        out.append(
            Finding(severity, check, split, file, message, int(images[i]["id"]), fix=fix, record=record, _image_index=i)
        )

    def on_ann(severity: str, check: str, k: int, message: str, fix: str, value: Any = None) -> None:
        file, record = src.where_annotation(k)
        out.append(
            Finding(
                severity,
                check,
                split,
                file,
                message,
                int(ann_img[k]),
                int(ann_ids[k]),
                fix=fix,
                record=record,
                _ann_index=k,
                _value=value,
            )
        )

    img_ids = np.fromiter((im["id"] for im in images), dtype=np.int64, count=len(images))
    dup_images = _duplicates(img_ids)
    for i in dup_images.tolist():
        on_image(
            ERROR,
            "duplicate_image_id",
            i,
            f"the id is used by more than one image (this one: {images[i]['file_name']})",
            "drop the later image",
        )
    names = np.asarray([im["file_name"] for im in images], dtype=object)
    if names.size:
        _, first = np.unique(names.astype(str), return_index=True)
        for i in sorted(set(range(names.size)) - set(first.tolist()) - set(dup_images.tolist())):
            on_image(WARNING, "duplicate_file_name", i, f"file {names[i]!r} is listed twice", "drop the later image")
    n = len(anns)
    if n == 0:
        if not images:
            out.append(Finding(WARNING, "empty_split", split, str(src.annotations), "split has no images"))
        return out
    ann_ids = np.fromiter((a["id"] for a in anns), dtype=np.int64, count=n)
    ann_img = np.fromiter((a["image_id"] for a in anns), dtype=np.int64, count=n)
    ann_cat = np.fromiter((a["category_id"] for a in anns), dtype=np.int64, count=n)
    boxes = coco.boxes_array()
    for k in _duplicates(ann_ids).tolist():
        on_ann(ERROR, "duplicate_annotation_id", k, "the id is used by more than one annotation", "give it a new id")
    unknown_img = ~np.isin(ann_img, img_ids)
    for k in np.flatnonzero(unknown_img).tolist():
        on_ann(ERROR, "unknown_image", k, f"points to image id {ann_img[k]}, which does not exist", "drop annotation")
    unknown_cat = ~np.isin(ann_cat, np.asarray(class_map.category_ids, dtype=np.int64))
    for k in np.flatnonzero(unknown_cat).tolist():
        on_ann(
            ERROR,
            "unknown_category",
            k,
            f"category_id {ann_cat[k]} is not one of the classes {list(class_map.category_ids)}",
            "drop annotation",
        )

    # image size per annotation (file size when known, else the labels'), looked up vectorised
    order = np.argsort(img_ids, kind="stable")
    wh = np.asarray(
        [sizes_from_files.get(i, (im.get("width") or 0, im.get("height") or 0)) for i, im in enumerate(images)],
        dtype=np.float64,
    ).reshape(-1, 2)
    pos = np.clip(np.searchsorted(img_ids[order], ann_img), 0, max(len(images) - 1, 0))
    ann_wh = wh[order][pos] if len(images) else np.zeros((n, 2))
    has_size = ~unknown_img & (ann_wh > 0).all(1)

    finite = np.isfinite(boxes).all(1)
    x, y, w, h = boxes.T
    with np.errstate(invalid="ignore", divide="ignore"):
        nonpos = finite & ((w <= 0) | (h <= 0))
        x2, y2 = x + w, y + h
        W, H = ann_wh.T
        if src.fmt == "yolo":  # the label file's own numbers: cx, cy, w, h as fractions of the image
            norm = np.stack([(x + w / 2) / W, (y + h / 2) / H, w / W, h / H], axis=1)
            outside01 = ((norm < -NORMALISED_TOLERANCE) | (norm > 1 + NORMALISED_TOLERANCE)).any(1)
            norm_out = finite & ~nonpos & has_size & outside01
        else:
            norm_out = np.zeros(n, dtype=bool)
        fully_out = finite & ~nonpos & has_size & ~norm_out & ((x >= W) | (y >= H) | (x2 <= 0) | (y2 <= 0))
        partly_out = (
            finite
            & ~nonpos
            & has_size
            & ~norm_out
            & ~fully_out
            & ((x < -BOX_TOLERANCE) | (y < -BOX_TOLERANCE) | (x2 > W + BOX_TOLERANCE) | (y2 > H + BOX_TOLERANCE))
        )

    def box(k: int) -> str:
        """The box as the user's file writes it."""
        if src.fmt == "voc":
            bx, by, bw, bh = (float(v) for v in boxes[k])
            edges = zip(("xmin", "ymin", "xmax", "ymax"), (bx, by, bx + bw, by + bh))
            return "box ({})".format(", ".join(f"{t} {number_text(v)}" for t, v in edges))
        if src.fmt == "yolo" and has_size[k]:
            with np.errstate(invalid="ignore"):
                cxcywh = [(x[k] + w[k] / 2) / W[k], (y[k] + h[k] / 2) / H[k], w[k] / W[k], h[k] / H[k]]
            return "box ({})".format(", ".join(f"{t} {v:.6g}" for t, v in zip(("cx", "cy", "w", "h"), cxcywh)))
        return f"box {anns[k]['bbox']}"

    for k in np.flatnonzero(~finite).tolist():
        on_ann(ERROR, "nonfinite_box", k, f"{box(k)} is not finite", "drop annotation")
    areas = np.fromiter((a.get("area", 0.0) for a in anns), dtype=np.float64, count=n)
    with np.errstate(invalid="ignore"):
        bad_area = finite & ~nonpos & ~(np.isfinite(areas) & (areas >= 0))  # (a bad box is reported once, as a box)
    for k in np.flatnonzero(bad_area).tolist():
        on_ann(
            ERROR, "invalid_area", k, f"area {anns[k]['area']} is not a finite non-negative number", "drop annotation"
        )
    for k in np.flatnonzero(nonpos).tolist():
        on_ann(ERROR, "nonpositive_box", k, f"{box(k)} has non-positive width or height", "drop annotation")
    for k in np.flatnonzero(norm_out).tolist():
        on_ann(ERROR, "coordinates_out_of_range", k, f"{box(k)} has values outside [0, 1]", "drop annotation")
    for k in np.flatnonzero(fully_out).tolist():
        on_ann(
            ERROR,
            "box_outside_image",
            k,
            f"{box(k)} lies entirely outside the {int(W[k])}x{int(H[k])} image",
            "drop annotation",
        )
    for k in np.flatnonzero(partly_out).tolist():
        on_ann(
            WARNING,
            "box_partly_outside",
            k,
            f"{box(k)} extends outside the {int(W[k])}x{int(H[k])} image",
            "clip to the image",
            (float(W[k]), float(H[k])),
        )

    known = ~unknown_img
    per_image = (
        np.bincount(np.searchsorted(img_ids[order], ann_img[known]), minlength=len(images))
        if known.any()
        else np.zeros(len(images), dtype=np.int64)
    )
    for j in np.flatnonzero(per_image > max_boxes).tolist():
        i = int(order[j])
        try:
            fn = images[i]["file_name"]
            where_file = fn if src.images_dir is None else str(src.image_path(fn))
        except DetkitError:  # a file_name leaving the folder: reported as path_escapes_root
            where_file = images[i]["file_name"]
        out.append(
            Finding(
                WARNING,
                "too_many_boxes",
                split,
                where_file,
                f"{per_image[j]} boxes, more than the model's {max_boxes} queries can detect",
                int(img_ids[i]),
                record=f"image id {img_ids[i]}",
            )
        )
    return out


def _check_classes(class_map: ClassMap, splits: dict[str, SplitSource], imbalance_ratio: float) -> list[Finding]:
    cats = [
        np.fromiter((a["category_id"] for a in s.coco.annotations), dtype=np.int64, count=len(s.coco.annotations))
        for s in splits.values()
    ]
    all_cats = np.concatenate(cats) if cats else np.zeros(0, dtype=np.int64)
    ids = np.asarray(class_map.category_ids, dtype=np.int64)
    counts = (all_cats[:, None] == ids[None, :]).sum(0) if all_cats.size else np.zeros(len(ids), dtype=np.int64)
    out: list[Finding] = []
    where = ", ".join(splits)
    for name, cid, c in zip(class_map.names, class_map.category_ids, counts.tolist()):
        if c == 0:
            out.append(
                Finding(
                    WARNING, "unused_category", where, "", f"class '{name}' (id {cid}) is declared but has no boxes"
                )
            )
    used = counts[counts > 0]
    if used.size >= 2 and used.max() / used.min() > imbalance_ratio:
        hi, lo = (
            int(np.argmax(np.where(counts > 0, counts, -1))),
            int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max))),
        )
        out.append(
            Finding(
                WARNING,
                "class_imbalance",
                where,
                "",
                f"'{class_map.names[hi]}' has {counts[hi]} boxes but '{class_map.names[lo]}' only {counts[lo]} "
                f"(ratio {counts[hi] / counts[lo]:.1f} > {imbalance_ratio:g})",
            )
        )
    return out


def _check_settings(max_boxes: int, imbalance_ratio: float) -> None:
    if not isinstance(max_boxes, int) or max_boxes < 1:
        raise DetkitError(f"max_boxes must be a positive integer, got {max_boxes!r}", params="max_boxes")
    if not imbalance_ratio >= 1:
        raise DetkitError(f"imbalance_ratio must be at least 1, got {imbalance_ratio!r}", params="imbalance_ratio")


def _run_checks(
    source: Path,
    class_map: ClassMap,
    splits: dict[str, SplitSource],
    findings: list[Finding],
    max_boxes: int,
    imbalance_ratio: float,
    decode: bool,
    workers: int,
    files: bool = True,
) -> ValidationReport:
    listed: set[Path] = set()
    for src in splits.values():
        file_findings: list[Finding] = []
        if files and src.images_dir is not None:
            file_findings, paths = _check_image_files(src, decode, workers)
            listed |= paths
        sizes = {
            f._image_index: f._value
            for f in file_findings
            if f.fix == "set size from file" and f._image_index is not None
        }
        findings.extend(file_findings)
        findings.extend(_check_annotations(src, class_map, max_boxes, sizes))
    if files:
        findings.extend(_check_unlisted(splits, listed))
    findings.extend(_check_classes(class_map, splits, imbalance_ratio))
    settings = {"max_boxes": max_boxes, "imbalance_ratio": imbalance_ratio, "decode": decode}
    return ValidationReport(source=source, class_map=class_map, splits=splits, findings=findings, settings=settings)


def validate_dataset(
    path: str | Path,
    images: str | Path | None = None,
    max_boxes: int = 300,
    imbalance_ratio: float = 20.0,
    decode: bool = True,
    workers: int = 4,
) -> ValidationReport:
    """Check a ``dataset.yaml`` (all splits), a plain COCO JSON (``images``: its image folder, guessed if left out),
    a folder of COCO JSON files, a YOLO dataset (``data.yaml`` or its folder) or a Pascal VOC folder.

    ``max_boxes``: the model's query count; ``imbalance_ratio``: warn above this most/least frequent class ratio;
    ``decode``: fully decode every image to find truncated files (headers only when False).
    """
    _check_settings(max_boxes, imbalance_ratio)
    path = Path(path)
    class_map, splits, findings = _load_sources(path, Path(images) if images is not None else None)
    return _run_checks(path, class_map, splits, findings, max_boxes, imbalance_ratio, decode, workers)


def validate_data(
    data: DatasetData,
    source: str | Path,
    fmt: str,
    files: bool = True,
    max_boxes: int = 300,
    imbalance_ratio: float = 20.0,
    decode: bool = False,
    workers: int = 4,
) -> ValidationReport:
    """The same checks on data already read from ``source`` as ``fmt`` (``files``: also check the image files;
    leave it off when the reader has read every image header itself)."""
    _check_settings(max_boxes, imbalance_ratio)
    source = Path(source)
    splits = sources_of(data, source, fmt)
    return _run_checks(source, data.class_map, splits, [], max_boxes, imbalance_ratio, decode, workers, files=files)


# ---------------------------------------------------------------------------------------------- fix


@dataclass
class FixResult:
    out: Path
    changes: list[dict[str, Any]]
    splits: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "changes": self.changes, "splits": self.splits}


def _fixed_split(
    src: SplitSource, findings: list[Finding], changes: list[dict[str, Any]], drop_errors: bool = False
) -> CocoData:
    """The split with each finding's fix applied; ``drop_errors``: instead drop every record an error names (and
    the annotations of dropped images), fill missing image sizes from the files, and change nothing else."""
    coco = src.coco
    drop_img: set[int] = set()
    drop_ann: set[int] = set()
    sizes: dict[int, tuple[int, int]] = {}
    clip: dict[int, tuple[float, float]] = {}
    renumber: list[int] = []

    def note(f: Finding, action: str) -> None:
        changes.append(
            {
                "split": src.name,
                "action": action,
                "check": f.check,
                "file": f.file,
                "record": f.record,
                "message": f.message,
                "image_id": f.image_id,
                "ann_id": f.ann_id,
            }
        )

    for f in findings:
        if f.split != src.name or f.fix is None:
            continue
        if drop_errors:
            if f.severity == ERROR and f._ann_index is not None:
                drop_ann.add(f._ann_index)
                note(f, "dropped annotation")
            elif f.severity == ERROR and f._image_index is not None:
                drop_img.add(f._image_index)
                note(f, "dropped image")
            elif f.check == "missing_size" and f._image_index is not None:
                sizes[f._image_index] = f._value
            continue
        if f.fix in ("drop image", "drop the later image") and f._image_index is not None:
            drop_img.add(f._image_index)
            note(f, "dropped image")
        elif f.fix == "set size from file" and f._image_index is not None:
            sizes[f._image_index] = f._value
            note(f, f"set size to {f._value[0]}x{f._value[1]}")
        elif f.fix == "drop annotation" and f._ann_index is not None:
            drop_ann.add(f._ann_index)
            note(f, "dropped annotation")
        elif f.fix == "clip to the image" and f._ann_index is not None:
            clip[f._ann_index] = f._value
        elif f.fix == "give it a new id" and f._ann_index is not None:
            renumber.append(f._ann_index)
        elif f.fix == "not copied":
            note(f, "not copied")

    images = []
    for i, img in enumerate(coco.images):
        if i in drop_img:
            continue
        img = dict(img)
        if i in sizes:
            img["width"], img["height"] = (int(v) for v in sizes[i])
        images.append(img)
    # annotations of dropped images go too, unless another (kept) image has the same id
    kept_ids = {int(im["id"]) for im in images}
    next_id = max((int(a["id"]) for a in coco.annotations), default=0) + 1
    anns = []
    for k, ann in enumerate(coco.annotations):
        if k in drop_ann:
            continue
        if int(ann["image_id"]) not in kept_ids:
            file, record = src.where_annotation(k)
            changes.append(
                {
                    "split": src.name,
                    "action": "dropped annotation",
                    "check": "image dropped",
                    "file": file,
                    "record": record,
                    "message": f"its image (image id {ann['image_id']}) was dropped",
                    "image_id": ann["image_id"],
                    "ann_id": ann["id"],
                }
            )
            continue
        ann = dict(ann)
        if k in clip:
            W, H = clip[k]
            x, y, w, h = (float(v) for v in ann["bbox"])
            x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, W), min(y + h, H)
            ann["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            if "area" in ann and w * h > 0:
                ann["area"] = float(ann["area"]) * (x2 - x1) * (y2 - y1) / (w * h)
            file, record = src.where_annotation(k)
            changes.append(
                {
                    "split": src.name,
                    "action": f"clipped box to {ann['bbox']}",
                    "check": "box_partly_outside",
                    "file": file,
                    "record": record,
                    "image_id": ann["image_id"],
                    "ann_id": ann["id"],
                }
            )
        if k in renumber:
            file, record = src.where_annotation(k)
            changes.append(
                {
                    "split": src.name,
                    "action": f"new annotation id {next_id}",
                    "check": "duplicate_annotation_id",
                    "file": file,
                    "record": record,
                    "image_id": ann["image_id"],
                    "ann_id": ann["id"],
                }
            )
            ann["id"] = next_id
            next_id += 1
        anns.append(ann)
    return CocoData(images=images, annotations=anns, categories=[], info=coco.info, licenses=coco.licenses)


def fix_dataset(report: ValidationReport, out: str | Path, overwrite: bool = False) -> FixResult:
    """Write a cleaned copy of the validated dataset to ``out`` (detkit layout) and list every change made."""
    changes: list[dict[str, Any]] = []
    missing_folder = [s for s, src in report.splits.items() if src.images_dir is None]
    if missing_folder:
        raise DetkitError(
            f"cannot write a fixed copy without the image folder of split(s) {missing_folder}",
            hint="validate with the image folder given (images)",
            path=report.source,
            params="images",
        )
    fixed = {name: _fixed_split(src, report.findings, changes) for name, src in report.splits.items()}
    with DatasetWriter(
        out,
        report.class_map,
        name=report.source.parent.name if report.source.is_file() else report.source.name,
        overwrite=overwrite,
    ) as w:
        for name, coco in fixed.items():
            src = report.splits[name]
            dst = InsideResolver(w.images_dir(name))
            pairs = [(src.image_path(im["file_name"]), dst(im["file_name"])) for im in coco.images]
            copy_many(pairs, False, f"copying {name} images")
            w.write_split(name, coco)
    return FixResult(
        out=Path(out),
        changes=changes,
        splits={s: {"images": len(c.images), "boxes": len(c.annotations)} for s, c in fixed.items()},
    )


def drop_invalid(report: ValidationReport) -> tuple[dict[str, CocoData], list[dict[str, Any]]]:
    """Every split without the records the report's errors name (annotations of dropped images go too) and with
    image sizes filled from the files; returns the splits and one entry per dropped record (file, record, check,
    message). Errors that name no record (e.g. categories that differ from dataset.yaml's) cannot be dropped."""
    unplaced = [f for f in report.errors if f._ann_index is None and f._image_index is None]
    if unplaced:
        f = unplaced[0]
        raise DetkitError(f"{f.line()} (this error names no record that could be dropped)", path=None)
    dropped: list[dict[str, Any]] = []
    splits = {
        name: _fixed_split(src, report.findings, dropped, drop_errors=True) for name, src in report.splits.items()
    }
    return splits, dropped
