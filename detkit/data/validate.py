"""A datumaro-style anomaly report over a dataset, and ``fix`` to write a cleaned copy.

``validate_dataset(path)`` checks a detkit ``dataset.yaml`` (every split) or a plain COCO JSON file and returns
a :class:`ValidationReport` of findings, each naming the split, the file, and the image / annotation id.

Errors (the data is wrong; ``detkit data validate`` exits non-zero):
    missing, unreadable or truncated image files, image sizes in the JSON that differ from the file, image
    ``file_name`` escaping the image folder, duplicate image or annotation ids, annotations pointing to unknown
    images or categories, boxes that are non-finite, of non-positive size or entirely outside their image,
    COCO categories that differ from dataset.yaml's classes.
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
from detkit.data.formats.base import InsideResolver, copy_many, list_images
from detkit.data.formats.detect import detect_format
from detkit.data.formats.coco_folder import guess_images_dir, is_detkit_dataset, split_name_of
from detkit.data.writer import DatasetWriter
from detkit.errors import DetkitError
from detkit.utils.progress import track

ERROR, WARNING = "error", "warning"
BOX_TOLERANCE = 1e-3  # pixels a box may stick out of its image before it counts as outside


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
    # positions for fix_dataset (not part of the report)
    _image_index: int | None = field(default=None, repr=False)
    _ann_index: int | None = field(default=None, repr=False)
    _value: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass
class SplitSource:
    name: str
    coco: CocoData
    annotations: Path
    images_dir: Path | None


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
            "splits": {s: {"images": len(v.coco.images), "boxes": len(v.coco.annotations)} for s, v in self.splits.items()},
            "checks": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
        }


# ---------------------------------------------------------------------------------------------- loading


def _refuse_foreign_layout(path: Path) -> None:
    """A YOLO or VOC dataset given where a detkit dataset is expected: say so and point to ``convert``."""
    try:
        fmt = detect_format(path)
    except DetkitError:  # no recognisable layout: the caller's own message says what is missing
        return
    if fmt != "coco":
        raise DetkitError(f"this is a {fmt.upper()} dataset, not a detkit dataset.yaml",
                          hint=f"convert it first: detkit data convert {path} OUT", path=path)


def _load_sources(path: Path, images: Path | None) -> tuple[ClassMap, dict[str, SplitSource], list[Finding]]:
    findings: list[Finding] = []
    if not path.exists():
        raise DetkitError("dataset not found", path=path)
    if is_detkit_dataset(path) or path.suffix in (".yaml", ".yml"):
        _refuse_foreign_layout(path)
        if images is not None:
            raise DetkitError("--images applies to a plain COCO JSON, not to a dataset.yaml", path=path)
        spec = load_dataset(path)
        splits: dict[str, SplitSource] = {}
        for name, s in spec.splits.items():
            coco = read_coco(s.annotations)
            if coco.categories:
                mine = {int(c["id"]): str(c["name"]) for c in coco.categories}
                theirs = dict(zip(spec.class_map.category_ids, spec.class_map.names))
                if mine != theirs:
                    findings.append(Finding(ERROR, "categories_mismatch", name, str(s.annotations),
                                            f"COCO categories {sorted(mine.items())} differ from dataset.yaml's classes {sorted(theirs.items())}"))
            splits[name] = SplitSource(name, coco, s.annotations, s.images)
        return spec.class_map, splits, findings
    if path.is_dir():
        _refuse_foreign_layout(path)
        raise DetkitError("no dataset.yaml in this folder", hint="pass a dataset.yaml or a COCO JSON file", path=path)
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
            findings.append(Finding(WARNING, "no_image_folder", split, str(path),
                                    "image folder not found: image files were not checked (pass --images DIR)"))
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


def _check_image_files(src: SplitSource, decode: bool, workers: int) -> list[Finding]:
    out: list[Finding] = []
    images, split, folder = src.coco.images, src.name, src.images_dir
    assert folder is not None
    inside = InsideResolver(folder)
    paths: list[Path | None] = []
    for i, img in enumerate(images):
        try:
            paths.append(inside(img["file_name"], source=src.annotations))
        except DetkitError as e:
            paths.append(None)
            out.append(Finding(ERROR, "path_escapes_root", split, img["file_name"], e.message, img["id"], fix="drop image", _image_index=i))
    todo = [(i, p) for i, p in enumerate(paths) if p is not None]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(track(pool.map(lambda ip: _probe(ip[1], decode), todo), f"checking {split} image files", total=len(todo)))
    for (i, p), (status, w, h) in zip(todo, results):
        img = images[i]
        name = str(p)
        if status == "missing":
            out.append(Finding(ERROR, "missing_image", split, name, "image file does not exist", img["id"], fix="drop image", _image_index=i))
        elif status == "unreadable":
            out.append(Finding(ERROR, "unreadable_image", split, name, "not a readable image", img["id"], fix="drop image", _image_index=i))
        elif status == "truncated":
            out.append(Finding(ERROR, "truncated_image", split, name, "image data is truncated or corrupt", img["id"], fix="drop image", _image_index=i))
        elif not img.get("width") or not img.get("height"):
            out.append(Finding(WARNING, "missing_size", split, name, f"no width/height in the JSON (file is {w}x{h})", img["id"],
                               fix="set size from file", _image_index=i, _value=(w, h)))
        elif (img["width"], img["height"]) != (w, h):
            out.append(Finding(ERROR, "size_mismatch", split, name, f"JSON says {img['width']}x{img['height']} but the file is {w}x{h}", img["id"],
                               fix="set size from file", _image_index=i, _value=(w, h)))
    listed = {p for p in paths if p is not None}
    for rel in list_images(folder):
        if inside(rel) not in listed:
            out.append(Finding(WARNING, "unlisted_image", split, str(folder / rel), "image file is not listed in the annotations", fix="not copied"))
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


def _check_annotations(src: SplitSource, class_map: ClassMap, max_boxes: int, sizes_from_files: dict[int, tuple[int, int]]) -> list[Finding]:
    out: list[Finding] = []
    coco, split, file = src.coco, src.name, str(src.annotations)
    images, anns = coco.images, coco.annotations
    img_ids = np.fromiter((im["id"] for im in images), dtype=np.int64, count=len(images))
    for i in _duplicates(img_ids).tolist():
        out.append(Finding(ERROR, "duplicate_image_id", split, file, f"image id {img_ids[i]} is used by more than one image ({images[i]['file_name']})",
                           int(img_ids[i]), fix="drop the later image", _image_index=i))
    names = np.asarray([im["file_name"] for im in images], dtype=object)
    if names.size:
        _, first = np.unique(names.astype(str), return_index=True)
        for i in sorted(set(range(names.size)) - set(first.tolist())):
            if i not in set(_duplicates(img_ids).tolist()):
                out.append(Finding(WARNING, "duplicate_file_name", split, file, f"file {names[i]!r} is listed twice", int(img_ids[i]),
                                   fix="drop the later image", _image_index=i))
    n = len(anns)
    if n == 0:
        if not images:
            out.append(Finding(WARNING, "empty_split", split, file, "split has no images"))
        return out
    ann_ids = np.fromiter((a["id"] for a in anns), dtype=np.int64, count=n)
    ann_img = np.fromiter((a["image_id"] for a in anns), dtype=np.int64, count=n)
    ann_cat = np.fromiter((a["category_id"] for a in anns), dtype=np.int64, count=n)
    boxes = coco.boxes_array()
    for k in _duplicates(ann_ids).tolist():
        out.append(Finding(ERROR, "duplicate_annotation_id", split, file, f"annotation id {ann_ids[k]} is used more than once", int(ann_img[k]),
                           int(ann_ids[k]), fix="give it a new id", _ann_index=k))
    unknown_img = ~np.isin(ann_img, img_ids)
    for k in np.flatnonzero(unknown_img).tolist():
        out.append(Finding(ERROR, "unknown_image", split, file, f"annotation points to image id {ann_img[k]}, which does not exist", int(ann_img[k]),
                           int(ann_ids[k]), fix="drop annotation", _ann_index=k))
    unknown_cat = ~np.isin(ann_cat, np.asarray(class_map.category_ids, dtype=np.int64))
    for k in np.flatnonzero(unknown_cat).tolist():
        out.append(Finding(ERROR, "unknown_category", split, file, f"category_id {ann_cat[k]} is not one of the classes {list(class_map.category_ids)}",
                           int(ann_img[k]), int(ann_ids[k]), fix="drop annotation", _ann_index=k))

    # image size per annotation (file size when known, else the JSON's), looked up vectorised
    order = np.argsort(img_ids, kind="stable")
    wh = np.asarray([sizes_from_files.get(i, (im.get("width") or 0, im.get("height") or 0)) for i, im in enumerate(images)], dtype=np.float64).reshape(-1, 2)
    pos = np.clip(np.searchsorted(img_ids[order], ann_img), 0, max(len(images) - 1, 0))
    ann_wh = wh[order][pos] if len(images) else np.zeros((n, 2))
    has_size = ~unknown_img & (ann_wh > 0).all(1)

    finite = np.isfinite(boxes).all(1)
    x, y, w, h = boxes.T
    with np.errstate(invalid="ignore"):
        nonpos = finite & ((w <= 0) | (h <= 0))
        x2, y2 = x + w, y + h
        W, H = ann_wh.T
        fully_out = finite & ~nonpos & has_size & ((x >= W) | (y >= H) | (x2 <= 0) | (y2 <= 0))
        partly_out = finite & ~nonpos & has_size & ~fully_out & (
            (x < -BOX_TOLERANCE) | (y < -BOX_TOLERANCE) | (x2 > W + BOX_TOLERANCE) | (y2 > H + BOX_TOLERANCE)
        )
    for k in np.flatnonzero(~finite).tolist():
        out.append(Finding(ERROR, "nonfinite_box", split, file, f"box {anns[k]['bbox']} is not finite", int(ann_img[k]), int(ann_ids[k]),
                           fix="drop annotation", _ann_index=k))
    for k in np.flatnonzero(nonpos).tolist():
        out.append(Finding(ERROR, "nonpositive_box", split, file, f"box {anns[k]['bbox']} has non-positive width or height", int(ann_img[k]),
                           int(ann_ids[k]), fix="drop annotation", _ann_index=k))
    for k in np.flatnonzero(fully_out).tolist():
        out.append(Finding(ERROR, "box_outside_image", split, file, f"box {anns[k]['bbox']} lies entirely outside the {int(W[k])}x{int(H[k])} image",
                           int(ann_img[k]), int(ann_ids[k]), fix="drop annotation", _ann_index=k))
    for k in np.flatnonzero(partly_out).tolist():
        out.append(Finding(WARNING, "box_partly_outside", split, file, f"box {anns[k]['bbox']} extends outside the {int(W[k])}x{int(H[k])} image",
                           int(ann_img[k]), int(ann_ids[k]), fix="clip to the image", _ann_index=k, _value=(float(W[k]), float(H[k]))))

    known = ~unknown_img
    per_image = np.bincount(np.searchsorted(img_ids[order], ann_img[known]), minlength=len(images)) if known.any() else np.zeros(len(images), dtype=np.int64)
    for j in np.flatnonzero(per_image > max_boxes).tolist():
        i = int(order[j])
        where_file = str(src.images_dir / images[i]["file_name"]) if src.images_dir is not None else images[i]["file_name"]
        out.append(Finding(WARNING, "too_many_boxes", split, where_file,
                           f"{per_image[j]} boxes, more than the model's {max_boxes} queries can detect", int(img_ids[i])))
    return out


def _check_classes(class_map: ClassMap, splits: dict[str, SplitSource], imbalance_ratio: float) -> list[Finding]:
    cats = [np.fromiter((a["category_id"] for a in s.coco.annotations), dtype=np.int64, count=len(s.coco.annotations)) for s in splits.values()]
    all_cats = np.concatenate(cats) if cats else np.zeros(0, dtype=np.int64)
    ids = np.asarray(class_map.category_ids, dtype=np.int64)
    counts = (all_cats[:, None] == ids[None, :]).sum(0) if all_cats.size else np.zeros(len(ids), dtype=np.int64)
    out: list[Finding] = []
    where = ", ".join(splits)
    for name, cid, c in zip(class_map.names, class_map.category_ids, counts.tolist()):
        if c == 0:
            out.append(Finding(WARNING, "unused_category", where, "", f"class '{name}' (id {cid}) is declared but has no boxes"))
    used = counts[counts > 0]
    if used.size >= 2 and used.max() / used.min() > imbalance_ratio:
        hi, lo = int(np.argmax(np.where(counts > 0, counts, -1))), int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
        out.append(Finding(WARNING, "class_imbalance", where, "",
                           f"'{class_map.names[hi]}' has {counts[hi]} boxes but '{class_map.names[lo]}' only {counts[lo]} "
                           f"(ratio {counts[hi] / counts[lo]:.1f} > {imbalance_ratio:g})"))
    return out


def validate_dataset(
    path: str | Path,
    images: str | Path | None = None,
    max_boxes: int = 300,
    imbalance_ratio: float = 20.0,
    decode: bool = True,
    workers: int = 4,
) -> ValidationReport:
    """Check a ``dataset.yaml`` (all splits) or a plain COCO JSON (``images``: its image folder, guessed if left out).

    ``max_boxes``: the model's query count; ``imbalance_ratio``: warn above this most/least frequent class ratio;
    ``decode``: fully decode every image to find truncated files (headers only when False).
    """
    if not isinstance(max_boxes, int) or max_boxes < 1:
        raise DetkitError(f"--max-boxes must be a positive integer, got {max_boxes!r}")
    if not imbalance_ratio >= 1:
        raise DetkitError(f"--imbalance-ratio must be at least 1, got {imbalance_ratio!r}")
    path = Path(path)
    class_map, splits, findings = _load_sources(path, Path(images) if images is not None else None)
    for src in splits.values():
        file_findings = _check_image_files(src, decode, workers) if src.images_dir is not None else []
        sizes = {f._image_index: f._value for f in file_findings if f.fix == "set size from file" and f._image_index is not None}
        findings.extend(file_findings)
        findings.extend(_check_annotations(src, class_map, max_boxes, sizes))
    findings.extend(_check_classes(class_map, splits, imbalance_ratio))
    settings = {"max_boxes": max_boxes, "imbalance_ratio": imbalance_ratio, "decode": decode}
    return ValidationReport(source=path, class_map=class_map, splits=splits, findings=findings, settings=settings)


# ---------------------------------------------------------------------------------------------- fix


@dataclass
class FixResult:
    out: Path
    changes: list[dict[str, Any]]
    splits: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "changes": self.changes, "splits": self.splits}


def _fixed_split(src: SplitSource, findings: list[Finding], changes: list[dict[str, Any]]) -> CocoData:
    coco = src.coco
    drop_img: set[int] = set()
    drop_ann: set[int] = set()
    sizes: dict[int, tuple[int, int]] = {}
    clip: dict[int, tuple[float, float]] = {}
    renumber: list[int] = []

    def note(f: Finding, action: str) -> None:
        changes.append({"split": src.name, "action": action, "check": f.check, "file": f.file, "image_id": f.image_id, "ann_id": f.ann_id})

    for f in findings:
        if f.split != src.name or f.fix is None:
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
            changes.append({"split": src.name, "action": "dropped annotation", "check": "image dropped", "file": str(src.annotations),
                            "image_id": ann["image_id"], "ann_id": ann["id"]})
            continue
        ann = dict(ann)
        if k in clip:
            W, H = clip[k]
            x, y, w, h = (float(v) for v in ann["bbox"])
            x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, W), min(y + h, H)
            ann["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            if "area" in ann and w * h > 0:
                ann["area"] = float(ann["area"]) * (x2 - x1) * (y2 - y1) / (w * h)
            changes.append({"split": src.name, "action": f"clipped box to {ann['bbox']}", "check": "box_partly_outside",
                            "file": str(src.annotations), "image_id": ann["image_id"], "ann_id": ann["id"]})
        if k in renumber:
            changes.append({"split": src.name, "action": f"new annotation id {next_id}", "check": "duplicate_annotation_id",
                            "file": str(src.annotations), "image_id": ann["image_id"], "ann_id": ann["id"]})
            ann["id"] = next_id
            next_id += 1
        anns.append(ann)
    return CocoData(images=images, annotations=anns, categories=[], info=coco.info, licenses=coco.licenses)


def fix_dataset(report: ValidationReport, out: str | Path, overwrite: bool = False) -> FixResult:
    """Write a cleaned copy of the validated dataset to ``out`` (detkit layout) and list every change made."""
    changes: list[dict[str, Any]] = []
    missing_folder = [s for s, src in report.splits.items() if src.images_dir is None]
    if missing_folder:
        raise DetkitError(f"cannot write a fixed copy without the image folder of split(s) {missing_folder}", hint="pass --images DIR", path=report.source)
    fixed = {name: _fixed_split(src, report.findings, changes) for name, src in report.splits.items()}
    with DatasetWriter(out, report.class_map, name=report.source.parent.name if report.source.is_file() else report.source.name, overwrite=overwrite) as w:
        for name, coco in fixed.items():
            src = report.splits[name]
            assert src.images_dir is not None
            inside, dst = InsideResolver(src.images_dir), InsideResolver(w.images_dir(name))
            copy_many([(inside(im["file_name"], source=src.annotations), dst(im["file_name"])) for im in coco.images], False, f"copying {name} images")
            w.write_split(name, coco)
    return FixResult(out=Path(out), changes=changes, splits={s: {"images": len(c.images), "boxes": len(c.annotations)} for s, c in fixed.items()})
