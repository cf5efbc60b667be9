"""The ultralytics YOLO detection layout.

Read::

    data.yaml            # names: {0: cat, 1: dog} (or a list); train/val/test(/calib): folder, .txt list, or a list
    images/<split>/...   # any image suffix ultralytics knows
    labels/<split>/...   # one .txt per image: "cls cx cy w h" normalised to [0, 1]; no file = background image

The label of ``.../images/.../x.jpg`` is ``.../labels/.../x.txt`` (the last ``images`` folder replaced by ``labels``,
as ultralytics does). Lines with ``1 + 2k`` values (k >= 3, ultralytics' segment format) become the polygon's
bounding box. ``path`` in ``data.yaml`` may only name the file's own folder (or a folder inside it): datasets are
never read from outside their root.

Write: the same layout, ``data.yaml`` without ``path`` (ultralytics then uses the file's own folder, so the
dataset can be moved), one label file per image (empty for background images), and ``detkit_meta.json`` (category
ids, image/annotation ids, areas, crowd regions; see :mod:`detkit.data.formats.sidecar`). Coordinates are
written with 12 significant digits, far below 1e-6 of a pixel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

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
    image_sizes,
    list_images,
    split_for_writing,
)
from detkit.data.formats.sidecar import SIDECAR_FILE, image_meta_entry, read_sidecar, write_sidecar
from detkit.data.writer import output_folder
from detkit.errors import DetkitError
from detkit.utils.files import read_yaml
from detkit.utils.paths import resolve_inside
from detkit.utils.progress import track

DATA_FILE = "data.yaml"


def find_data_yaml(src: Path) -> Path:
    if src.is_file():
        return src
    for name in (DATA_FILE, "data.yml", "dataset.yaml"):
        if (src / name).is_file():
            return src / name
    raise DetkitError(
        f"no {DATA_FILE} in this folder", hint="a YOLO dataset needs data.yaml with 'names' and split folders", path=src
    )


def _root(yaml_path: Path, raw: dict[str, Any]) -> Path:
    here = yaml_path.parent.resolve()
    path = raw.get("path")
    if path in (None, "", "."):
        return here
    if not isinstance(path, str):
        raise DetkitError(f"'path' must be a string, got {type(path).__name__}", path=yaml_path)
    if Path(path).is_absolute() and Path(path).resolve() == here:
        return here
    return resolve_inside(here, path, source=yaml_path, what="path")


def parse_names(raw: dict[str, Any], yaml_path: Path) -> list[str]:
    names = raw.get("names")
    if isinstance(names, dict):
        keys = list(names)
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys) or sorted(keys) != list(
            range(len(keys))
        ):
            raise DetkitError(
                f"'names' keys must be the class indices 0..{len(keys) - 1}, got {keys[:10]}", path=yaml_path
            )
        names = [names[i] for i in range(len(keys))]
    if not isinstance(names, list) or not names:
        raise DetkitError("'names' must be a non-empty list or an {index: name} mapping", path=yaml_path)
    bad = [n for n in names if not isinstance(n, (str, int)) or isinstance(n, bool) or str(n) == ""]
    if bad:
        raise DetkitError(f"'names' has invalid class names {bad[:5]}", path=yaml_path)
    nc = raw.get("nc")
    if nc is not None and nc != len(names):
        raise DetkitError(f"'nc' is {nc} but 'names' has {len(names)} entries", path=yaml_path)
    return [str(n) for n in names]


def _split_images(root: Path, value: Any, yaml_path: Path, split: str) -> tuple[Path, list[str]]:
    """The split's image folder and its images relative to it (the dataset root when several sources)."""
    entries = value if isinstance(value, list) else [value]
    if not entries:
        raise DetkitError(f"'{split}' is an empty list", path=yaml_path)
    base = None
    rel_files: list[str] = []  # relative to root
    for entry in entries:
        if not isinstance(entry, str):
            raise DetkitError(f"'{split}' must be a path or a list of paths, got {entry!r}", path=yaml_path)
        target = resolve_inside(root, entry, source=yaml_path, what=split)
        if target.is_dir():
            base = target if len(entries) == 1 else root
            prefix = target.relative_to(root).as_posix()
            prefix = "" if prefix == "." else prefix + "/"
            rel_files.extend(prefix + f for f in list_images(target))
        elif target.is_file() and target.suffix == ".txt":
            for i, line in enumerate(target.read_text(encoding="utf-8").splitlines(), 1):
                line = line.strip()
                if line:
                    rel = line[2:] if line.startswith("./") else line
                    rel_files.append(
                        resolve_inside(root, rel, source=f"{target}:{i}", what="image path")
                        .relative_to(root)
                        .as_posix()
                    )
        else:
            raise DetkitError(
                f"'{split}': {entry!r} is neither a folder nor a .txt image list",
                hint="check the split paths in data.yaml",
                path=yaml_path,
            )
    base = base if base is not None else root
    cut = len(base.relative_to(root).as_posix()) + 1 if base != root else 0
    return base, [f[cut:] for f in rel_files]


def label_rel_path(image_rel: str) -> str:
    """ultralytics' rule on a root-relative POSIX path: the last ``images`` folder becomes ``labels``, the
    suffix ``.txt``."""
    parts = image_rel.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return os.path.splitext("/".join(parts))[0] + ".txt"


def _parse_labels(
    label_files: list[str], num_classes: int, description: str = "reading labels"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All label lines of a split: (row -> file index, row -> line number, class index, normalised cxcywh).

    Lines that are not 'class cx cy w h' numbers (or a segment) and class indices out of range are errors here;
    coordinate values (non-finite, negative sizes, outside [0, 1]) are the validator's to judge."""
    tokens: list[list[str]] = []
    where: list[tuple[int, int]] = []
    for fi, path in enumerate(track(label_files, description)):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            continue  # no label file: a background image
        except (UnicodeDecodeError, OSError) as e:
            raise DetkitError(f"unreadable label file ({type(e).__name__})", path=path) from None
        for li, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if parts:
                tokens.append(parts)
                where.append((fi, li))
    n = len(tokens)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros((0, 4))
    arity = np.fromiter(map(len, tokens), dtype=np.int64, count=n)
    is_box = arity == 5
    is_poly = (arity >= 7) & (arity % 2 == 1)

    def fail(r: int, problem: str) -> None:
        fi, li = where[r]
        raise DetkitError(
            f"line {li}: {problem}", hint="YOLO label lines are 'class cx cy w h' (normalised)", path=label_files[fi]
        )

    bad = np.flatnonzero(~(is_box | is_poly))
    if bad.size:
        r = int(bad[0])
        fail(r, f"expected 5 values (class cx cy w h), got {arity[r]}")
    values = np.zeros((n, 5))
    box_rows = np.flatnonzero(is_box)
    try:
        values[box_rows] = np.array([tokens[r] for r in box_rows.tolist()], dtype=np.float64).reshape(-1, 5)
    except ValueError:
        for r in box_rows.tolist():
            try:
                [float(t) for t in tokens[r]]
            except ValueError:
                fail(r, f"not a number in {' '.join(tokens[r])!r}")
    for r in np.flatnonzero(is_poly).tolist():  # rare: segment labels, reduced to their bounding box
        try:
            v = np.asarray(tokens[r], dtype=np.float64)
        except ValueError:
            fail(r, f"not a number in {' '.join(tokens[r][:8])!r}...")
        xy = v[1:].reshape(-1, 2)
        lo, hi = xy.min(0), xy.max(0)
        values[r] = [v[0], *((lo + hi) / 2), *(hi - lo)]
    cls = values[:, 0]
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isfinite(cls) | (cls != np.round(cls)) | (cls < 0) | (cls >= num_classes))
    if bad.size:
        r = int(bad[0])
        fail(
            r, f"class index {tokens[r][0]} out of range (data.yaml names {num_classes} classes: 0..{num_classes - 1})"
        )
    where_arr = np.asarray(where, dtype=np.int64).reshape(-1, 2)
    return where_arr[:, 0], where_arr[:, 1], cls.astype(np.int64), values[:, 1:]


def read_yolo(src: str | Path) -> DatasetData:
    yaml_path = find_data_yaml(Path(src))
    raw = read_yaml(yaml_path, what="YOLO data file")
    if not isinstance(raw, dict):
        raise DetkitError("YOLO data file must be a mapping with 'names' and split paths", path=yaml_path)
    names = parse_names(raw, yaml_path)
    root = _root(yaml_path, raw)
    meta = read_sidecar(root)
    if meta is not None and list(meta.class_map.names) != names:
        raise DetkitError(
            f"{SIDECAR_FILE} lists classes {list(meta.class_map.names)} but data.yaml names {names}",
            hint=f"delete {SIDECAR_FILE} if data.yaml is right",
            path=yaml_path,
        )
    class_map = meta.class_map if meta is not None else ClassMap.from_names(names)
    splits: dict[str, SplitData] = {}
    for split in KNOWN_SPLITS:
        if raw.get(split) in (None, "", []):
            continue
        base, file_names = _split_images(root, raw[split], yaml_path, split)
        inside = InsideResolver(base)  # refuses links leaving the root
        paths = [inside(f, source=yaml_path) for f in file_names]
        sizes = image_sizes([str(p) for p in paths], f"reading {split} image headers")
        prefix = base.relative_to(root).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        root_str = str(root)
        label_files = [os.path.join(root_str, label_rel_path(prefix + f)) for f in file_names]
        file_idx, line_no, labels, cxcywh = _parse_labels(label_files, len(class_map), f"reading {split} labels")
        wh = sizes[file_idx].astype(np.float64)
        with np.errstate(invalid="ignore"):  # non-finite values stay non-finite: the validator reports them
            boxes = np.concatenate([(cxcywh[:, :2] - cxcywh[:, 2:] / 2) * wh, cxcywh[:, 2:] * wh], axis=1)
        images = [{"id": 0, "file_name": f, "width": w, "height": h} for f, (w, h) in zip(file_names, sizes.tolist())]
        n = len(file_names)
        where = Origins(
            label_files + [str(p) for p in paths],
            np.arange(n, 2 * n),
            file_idx,
            line_no,
            "line",
            meta.path if meta is not None else None,
        )
        coco, where = assemble_split(images, file_names, file_idx, labels, boxes, class_map, meta, split, where)
        splits[split] = SplitData(coco=coco, images_dir=base, source=yaml_path, origins=where)
    if not splits:
        raise DetkitError(f"no split paths ({', '.join(KNOWN_SPLITS)}) in the YOLO data file", path=yaml_path)
    name = meta.name if meta is not None else yaml_path.parent.name
    return DatasetData(class_map=class_map, splits=splits, name=name)


def write_yolo(
    data: DatasetData,
    out: str | Path,
    overwrite: bool = False,
    link: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    cmap = data.class_map
    with output_folder(out, overwrite=overwrite, extra_files=extra_files) as tmp:
        meta_splits: dict[str, dict[str, dict[str, Any]]] = {}
        for split_name, split in data.splits.items():
            coco = split.coco
            plain, crowd = split_for_writing(coco)
            meta: dict[str, dict[str, Any]] = {}
            check_unique_stems([img["file_name"] for img in coco.images], split_name, "YOLO")
            (tmp / "images" / split_name).mkdir(parents=True, exist_ok=True)
            dst = InsideResolver(tmp / "images" / split_name)
            copy_many(
                [(split.image_path(img["file_name"]), dst(img["file_name"])) for img in coco.images],
                link,
                f"copying {split_name} images",
            )
            for img in track(coco.images, f"writing {split_name} labels"):
                fn = img["file_name"]
                anns = plain.get(int(img["id"]), [])
                lines = ""
                if anns:
                    labels = cmap.category_ids_to_labels(
                        np.fromiter((a["category_id"] for a in anns), dtype=np.int64, count=len(anns))
                    )
                    xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
                    size = np.array([img["width"], img["height"]], dtype=np.float64)
                    cxcy = (xywh[:, :2] + xywh[:, 2:] / 2) / size
                    wh = xywh[:, 2:] / size
                    rows = np.concatenate([cxcy, wh], axis=1).tolist()
                    lines = "".join(
                        f"{c} {r[0]:.12g} {r[1]:.12g} {r[2]:.12g} {r[3]:.12g}\n" for c, r in zip(labels.tolist(), rows)
                    )
                lbl = (tmp / "labels" / split_name / fn).with_suffix(".txt")
                lbl.parent.mkdir(parents=True, exist_ok=True)
                lbl.write_text(lines, encoding="utf-8")
                meta[fn] = image_meta_entry(img, anns, crowd.get(int(img["id"]), []), fn)
            meta_splits[split_name] = meta
        doc: dict[str, Any] = {s: f"images/{s}" for s in data.splits}
        doc["nc"] = len(cmap)
        doc["names"] = dict(enumerate(cmap.names))
        header = (
            "# ultralytics YOLO dataset written by detkit; 'path' is left out so the dataset's own folder is used\n"
        )
        (tmp / DATA_FILE).write_text(
            header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        write_sidecar(tmp, "yolo", cmap, data.name, meta_splits)
    return Path(out)
