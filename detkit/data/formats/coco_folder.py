"""COCO inputs: a detkit ``dataset.yaml``, a plain COCO JSON, or a folder with ``annotations/*.json``.

Plain COCO has no image folder of its own. Unless ``images`` is given, the folder of ``<root>/annotations/<name>.json``
is looked for as ``images/<name>``, ``<name>``, the same without an ``instances_`` prefix (COCO's ``val2017/``),
``images/<split>``, ``<split>`` or ``images`` under the root
(``<root>`` is the folder above ``annotations/``, or the JSON's own folder), where ``<split>`` is the split
name derived from ``<name>`` (``instances_val2017`` -> ``val``). Model order is the categories sorted by id.
"""

from __future__ import annotations

import re
from pathlib import Path

from detkit.data.classmap import ClassMap
from detkit.data.coco import read_coco
from detkit.data.dataset import DATASET_FILE, KNOWN_SPLITS, load_dataset
from detkit.data.formats.base import DatasetData, SplitData
from detkit.errors import DetkitError


def split_name_of(stem: str) -> str:
    """``instances_train2017`` -> ``train``, ``val.json`` -> ``val``; anything else keeps its stem."""
    s = re.sub(r"^(instances|annotations|labels|coco)[_-]", "", stem.lower())
    s = re.sub(r"[_-]?(19|20)\d\d$", "", s)
    aliases = {"validation": "val", "valid": "val", "calibration": "calib", "training": "train"}
    s = aliases.get(s, s)
    return s if s in KNOWN_SPLITS else stem


def is_detkit_dataset(src: Path) -> bool:
    return (src.is_dir() and (src / DATASET_FILE).is_file()) or (src.is_file() and src.name == DATASET_FILE)


def guess_images_dir(json_path: Path, split: str) -> Path:
    root = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    stem = json_path.stem
    core = re.sub(r"^(instances|annotations|labels|coco)[_-]", "", stem)  # instances_val2017 -> val2017
    for cand in (
        root / "images" / stem,
        root / stem,
        root / "images" / core,
        root / core,
        root / "images" / split,
        root / split,
        root / "images",
    ):
        if cand.is_dir():
            return cand
    raise DetkitError(
        f"cannot find the image folder for this COCO file (looked for images/{stem}, {stem}, {core}, "
        f"images/{split}, {split}, images under {root})",
        hint="pass the image folder (images)",
        params="images",
        path=json_path,
    )


def _read_detkit(src: Path) -> DatasetData:
    spec = load_dataset(src)
    splits: dict[str, SplitData] = {}
    for name, s in spec.splits.items():
        coco = read_coco(s.annotations)
        if coco.categories:
            file_map = ClassMap.from_coco_categories(coco.categories)
            if set(file_map.category_ids) != set(spec.class_map.category_ids) or dict(
                zip(file_map.category_ids, file_map.names)
            ) != dict(zip(spec.class_map.category_ids, spec.class_map.names)):
                spec.class_map.check_same(
                    file_map,
                    str(spec.path),
                    str(s.annotations),
                    hint="make the COCO categories match dataset.yaml's classes",
                )
        splits[name] = SplitData(coco=coco, images_dir=s.images, source=s.annotations)
    return DatasetData(class_map=spec.class_map, splits=splits, name=spec.name)


def _read_plain(json_files: list[Path], images: Path | None, name: str) -> DatasetData:
    splits: dict[str, SplitData] = {}
    class_map: ClassMap | None = None
    first: Path | None = None
    for jf in json_files:
        coco = read_coco(jf)
        if not coco.categories:
            raise DetkitError("COCO file has no categories", hint="a dataset needs its class list", path=jf)
        try:
            cmap = ClassMap.from_coco_categories(coco.categories)
        except DetkitError as e:
            raise DetkitError(e.message, path=jf) from None
        if class_map is None:
            class_map, first = cmap, jf
        else:
            class_map.check_same(cmap, str(first), str(jf), hint="all splits must share the same categories")
        split = split_name_of(jf.stem)
        if split in splits:
            raise DetkitError(f"two annotation files map to the split '{split}'", path=jf)
        img_dir = images if images is not None else guess_images_dir(jf, split)
        if not img_dir.is_dir():
            raise DetkitError("image folder not found", path=img_dir)
        splits[split] = SplitData(coco=coco, images_dir=img_dir.resolve(), source=jf)
    assert class_map is not None
    return DatasetData(class_map=class_map, splits=splits, name=name)


def read_coco_source(src: str | Path, images: str | Path | None = None) -> DatasetData:
    """Read any COCO-style source into memory (see the module docstring for the layouts)."""
    src = Path(src)
    images = Path(images) if images is not None else None
    if not src.exists():
        raise DetkitError("source not found", path=src)
    if is_detkit_dataset(src) or (src.is_file() and src.suffix in (".yaml", ".yml")):
        if images is not None:
            raise DetkitError(
                "images applies to plain COCO JSON, not to a dataset.yaml (which names its image folders)",
                path=src,
                params="images",
            )
        return _read_detkit(src)
    if src.is_file():
        if src.suffix.lower() != ".json":
            raise DetkitError("expected a COCO .json file or a dataset.yaml", path=src)
        return _read_plain([src], images, src.parent.name)
    ann_dir = src / "annotations"
    json_files = sorted(ann_dir.glob("*.json")) if ann_dir.is_dir() else []
    if not json_files:
        raise DetkitError(
            "no dataset.yaml and no annotations/*.json in this folder",
            hint="point to a COCO JSON file or a detkit dataset",
            path=src,
        )
    if images is not None and len(json_files) > 1:
        raise DetkitError(
            f"images is ambiguous with {len(json_files)} annotation files",
            hint="convert one JSON file at a time",
            path=ann_dir,
            params="images",
        )
    return _read_plain(json_files, images, src.name)
