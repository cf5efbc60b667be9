"""Pascal VOC: ``Annotations/<id>.xml``, ``JPEGImages/<file>``, ``ImageSets/Main/<split>.txt`` (one id a line).

XML is parsed with defusedxml only: DTDs and entities are refused, never expanded.

Boxes: VOC's ``xmin ymin xmax ymax`` are read and written as the pixel edges ``x, y, x + w, y + h`` of the COCO box,
without VOC's historical 1-based shift (as FiftyOne and datumaro do), and as exact decimals (integers stay
integers). ``difficult`` is kept as its own concept: it becomes ``"difficult": 1`` on the COCO annotation (and
is written back from it); it does not mean crowd. Crowd regions live in ``detkit_meta.json`` only (see
:mod:`detkit.data.formats.sidecar`).

Splits come from ``ImageSets/Main/{train,val,calib,test}.txt`` (``trainval.txt`` only when neither train nor val
exists). Without ImageSets every XML file is one ``train`` split. When several splits have an image of the same
name, the writer puts each split's files under a ``<split>/`` sub-folder (ids ``<split>/<name>``).
Class order: the sidecar's, else ``classes`` if given (objects of other classes are then an error), else the
class names sorted alphabetically (VOC's own convention).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import defusedxml
import defusedxml.ElementTree as DET
import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.dataset import KNOWN_SPLITS
from detkit.data.formats.base import (
    DatasetData,
    InsideResolver,
    Origins,
    SplitData,
    assemble_split,
    check_unique_stems,
    copy_many,
    image_size,
    number_text,
    split_for_writing,
)
from detkit.data.formats.sidecar import image_meta_entry, read_sidecar, write_sidecar
from detkit.data.writer import output_folder
from detkit.errors import DetkitError
from detkit.utils.paths import resolve_inside
from detkit.utils.progress import track

ANNOTATIONS, IMAGES, IMAGESETS = "Annotations", "JPEGImages", "ImageSets/Main"


def is_voc(src: Path) -> bool:
    return src.is_dir() and (src / ANNOTATIONS).is_dir() and (src / IMAGES).is_dir()


def _parse_xml(path: Path) -> ET.Element:
    try:
        return DET.parse(path, forbid_dtd=True).getroot()
    except defusedxml.DefusedXmlException as e:
        raise DetkitError(
            f"XML with a DTD or entities is refused ({type(e).__name__})", hint="VOC files need no DTD", path=path
        ) from None
    except ET.ParseError as e:
        line, col = e.position
        raise DetkitError(f"malformed XML (line {line}, column {col + 1})", path=path) from None
    except OSError as e:
        raise DetkitError(f"unreadable XML file ({type(e).__name__})", path=path) from None


def _text(el: ET.Element | None, tag: str) -> str | None:
    child = el.find(tag) if el is not None else None
    return child.text.strip() if child is not None and child.text is not None else None


def _number(path: Path, obj_index: int, el: ET.Element | None, tag: str) -> float:
    """The number in ``<tag>``; text that is no number is an error here, a non-finite value is the validator's."""
    t = _text(el, tag)
    try:
        return float(t) if t is not None else float("")
    except ValueError:
        raise DetkitError(f"object {obj_index}: <{tag}> is {t!r}, not a number", path=path) from None


def _size(xml_path: Path, el: ET.Element, img_path: Path) -> tuple[int, int]:
    """``<size>`` from the XML, else from the image header; (0, 0) when neither is known (the validator then
    reports the missing or unreadable image)."""
    size = el.find("size")
    if size is not None:
        w, h = (_number(xml_path, -1, size, t) for t in ("width", "height"))
        if np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0:
            return int(w), int(h)
    try:
        return image_size(img_path)
    except DetkitError:
        return 0, 0


def _split_files(root: Path) -> dict[str, Path]:
    """``ImageSets/Main/<split>.txt`` per split (``trainval.txt`` as train when neither train nor val exists)."""
    sets = root / IMAGESETS
    found = {s: sets / f"{s}.txt" for s in KNOWN_SPLITS if (sets / f"{s}.txt").is_file()}
    if not found.keys() & {"train", "val"} and (sets / "trainval.txt").is_file():
        found["train"] = sets / "trainval.txt"
    return found


def _split_ids(root: Path) -> dict[str, list[str]]:
    found = _split_files(root)
    if found:
        return {
            s: [ln.split()[0] for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
            for s, p in found.items()
        }
    ann = root / ANNOTATIONS
    return {"train": sorted(p.relative_to(ann).with_suffix("").as_posix() for p in ann.rglob("*.xml"))}


def _find_image(root: Path, xml_path: Path, image_id: str, filename: str | None) -> Path:
    """The image of an XML file; when it does not exist, the path it should have (the validator reports it)."""
    img_root = root / IMAGES
    expected = []
    if filename:
        # <filename> is relative to JPEGImages (sub-folders as in the id), never outside it
        rel_dir = PurePosixPath(image_id).parent
        cand = [filename] if "/" in filename else [str(rel_dir / filename), filename]
        for c in cand:
            p = resolve_inside(img_root, c, source=xml_path, what="filename")
            if p.is_file():
                return p
            expected.append(p)
    stem = resolve_inside(img_root, image_id, source=xml_path, what="image id")
    for suffix in (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG"):
        if stem.with_name(stem.name + suffix).is_file():
            return stem.with_name(stem.name + suffix)
    return expected[0] if expected else stem.with_name(stem.name + ".jpg")


def read_voc(src: str | Path, classes: Sequence[str] | None = None) -> DatasetData:
    root = Path(src)
    if not is_voc(root):
        raise DetkitError(f"not a Pascal VOC folder (needs {ANNOTATIONS}/ and {IMAGES}/)", path=root)
    root = root.resolve()
    meta = read_sidecar(root)
    parsed: dict[str, list[tuple[str, Path, Path, ET.Element]]] = {}
    split_files = _split_files(root)
    for split, ids in _split_ids(root).items():
        rows = []
        for image_id in track(ids, f"reading {split} XML"):
            xml_path = resolve_inside(
                root / ANNOTATIONS, image_id + ".xml", source=root / IMAGESETS / f"{split}.txt", what="image id"
            )
            if not xml_path.is_file():
                raise DetkitError(f"annotation file for '{image_id}' not found", path=xml_path)
            el = _parse_xml(xml_path)
            rows.append((image_id, xml_path, _find_image(root, xml_path, image_id, _text(el, "filename")), el))
        parsed[split] = rows
    if meta is not None:
        class_map = meta.class_map
    elif classes:
        class_map = ClassMap.from_names(list(classes))
    else:
        names = {(_text(o, "name") or "") for rows in parsed.values() for *_, el in rows for o in el.findall("object")}
        if not names:
            raise DetkitError(
                "no objects in any XML file, so no class list",
                hint="pass the classes explicitly (classes, e.g. a,b,c)",
                path=root,
                params="classes",
            )
        class_map = ClassMap.from_names(sorted(names))
    label_of = {n: i for i, n in enumerate(class_map.names)}
    splits: dict[str, SplitData] = {}
    for split, rows in parsed.items():
        images, keys, sources = [], [], {}
        row_image, row_object, labels, boxes, extras = [], [], [], [], []
        for i, (image_id, xml_path, img_path, el) in enumerate(rows):
            w, h = _size(xml_path, el, img_path)
            fn = img_path.relative_to(root / IMAGES).as_posix()
            images.append({"id": 0, "file_name": fn, "width": w, "height": h})
            keys.append(image_id)
            for k, obj in enumerate(el.findall("object")):
                name = _text(obj, "name")
                if name not in label_of:
                    raise DetkitError(
                        f"object {k}: unknown class {name!r} (classes: {', '.join(class_map.names)})",
                        hint="add the class or fix the name",
                        path=xml_path,
                    )
                bb = obj.find("bndbox")
                if bb is None:
                    raise DetkitError(f"object {k} ({name}) has no <bndbox>", path=xml_path)
                x1, y1, x2, y2 = (_number(xml_path, k, bb, t) for t in ("xmin", "ymin", "xmax", "ymax"))
                row_image.append(i)
                row_object.append(k)
                labels.append(label_of[name])
                boxes.append((x1, y1, x2 - x1, y2 - y1))
                extras.append({"difficult": 1} if _text(obj, "difficult") in ("1", "true") else {})
        row_img = np.asarray(row_image, dtype=np.int64)
        where = Origins(
            [str(r[1]) for r in rows],
            np.arange(len(rows)),
            row_img,
            np.asarray(row_object, dtype=np.int64),
            "object",
            meta.path if meta is not None else None,
        )
        coco, where = assemble_split(
            images,
            keys,
            row_img,
            np.asarray(labels, dtype=np.int64),
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            class_map,
            meta,
            split,
            where,
            extras,
        )
        # the sidecar may have restored original file names: remember where each image really is
        for img, (_, _, img_path, _) in zip(images, rows):
            sources[img["file_name"]] = img_path
        splits[split] = SplitData(
            coco=coco,
            images_dir=root / IMAGES,
            sources=sources,
            source=split_files.get(split, root / ANNOTATIONS),
            origins=where,
        )
    return DatasetData(class_map=class_map, splits=splits, name=meta.name if meta is not None else root.name)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def _xml(img: dict[str, Any], filename: str, anns: list[dict[str, Any]], cmap: ClassMap) -> bytes:
    root = ET.Element("annotation")
    _sub(root, "folder", "JPEGImages")
    _sub(root, "filename", filename)
    size = _sub(root, "size")
    _sub(size, "width", str(int(img["width"])))
    _sub(size, "height", str(int(img["height"])))
    _sub(size, "depth", "3")
    _sub(root, "segmented", "0")
    name_of = dict(zip(cmap.category_ids, cmap.names))
    for a in anns:
        obj = _sub(root, "object")
        _sub(obj, "name", name_of[int(a["category_id"])])
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", "0")
        _sub(obj, "difficult", "1" if a.get("difficult") else "0")
        x, y, w, h = (float(v) for v in a["bbox"])
        bb = _sub(obj, "bndbox")
        for tag, v in (("xmin", x), ("ymin", y), ("xmax", x + w), ("ymax", y + h)):
            _sub(bb, tag, number_text(v))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def write_voc(
    data: DatasetData,
    out: str | Path,
    overwrite: bool = False,
    link: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    cmap = data.class_map
    seen: dict[str, str] = {}
    clash = False
    for split_name, split in data.splits.items():
        for img in split.coco.images:
            stem = str(PurePosixPath(img["file_name"]).with_suffix(""))
            clash |= seen.setdefault(stem, split_name) != split_name
    all_rels = [
        f"{s}/{img['file_name']}" if clash else img["file_name"]
        for s, sp in data.splits.items()
        for img in sp.coco.images
    ]
    check_unique_stems(all_rels, ", ".join(data.splits), "VOC")
    with output_folder(out, overwrite=overwrite, extra_files=extra_files) as tmp:
        meta_splits: dict[str, dict[str, dict[str, Any]]] = {}
        (tmp / IMAGESETS).mkdir(parents=True)
        (tmp / ANNOTATIONS).mkdir()
        (tmp / IMAGES).mkdir()
        for split_name, split in data.splits.items():
            plain, crowd = split_for_writing(split.coco)
            ids, meta = [], {}
            rels = [f"{split_name}/{img['file_name']}" if clash else img["file_name"] for img in split.coco.images]
            dst = InsideResolver(tmp / IMAGES)
            copy_many(
                [(split.image_path(img["file_name"]), dst(rel)) for img, rel in zip(split.coco.images, rels)],
                link,
                f"copying {split_name} images",
            )
            for img, rel in zip(track(split.coco.images, f"writing {split_name} XML"), rels):
                key = str(PurePosixPath(rel).with_suffix(""))
                anns = plain.get(int(img["id"]), [])
                xml_path = resolve_inside(tmp / ANNOTATIONS, key + ".xml", what="file_name")
                xml_path.parent.mkdir(parents=True, exist_ok=True)
                xml_path.write_bytes(_xml(img, PurePosixPath(rel).name, anns, cmap))
                ids.append(key)
                meta[key] = image_meta_entry(img, anns, crowd.get(int(img["id"]), []), rel)
            (tmp / IMAGESETS / f"{split_name}.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
            meta_splits[split_name] = meta
        write_sidecar(tmp, "voc", cmap, data.name, meta_splits)
    return Path(out)


__all__ = ["read_voc", "write_voc", "is_voc"]
