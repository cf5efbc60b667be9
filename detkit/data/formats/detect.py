"""``--from auto``: recognise a source's format from its files."""

from __future__ import annotations

from pathlib import Path

from detkit.data.formats.coco_folder import is_detkit_dataset
from detkit.data.formats.voc import is_voc
from detkit.errors import DetkitError
from detkit.utils.files import read_yaml

LAYOUTS = (
    "coco: dataset.yaml, a COCO .json file, or a folder with annotations/*.json; "
    "yolo: data.yaml with 'names'; voc: Annotations/ and JPEGImages/"
)


def _is_yolo_yaml(path: Path) -> bool:
    """ultralytics' data.yaml has 'names'; detkit's dataset.yaml has 'classes' and 'splits'."""
    raw = read_yaml(path, what="YAML file")
    return isinstance(raw, dict) and "names" in raw and "classes" not in raw


def detect_format(src: str | Path) -> str:
    """``"coco"``, ``"yolo"`` or ``"voc"``; a clear error when the layout is none of them."""
    src = Path(src)
    if not src.exists():
        raise DetkitError("source not found", path=src)
    if src.is_file():
        if src.suffix.lower() == ".json":
            return "coco"
        if src.suffix.lower() in (".yaml", ".yml"):
            return "yolo" if _is_yolo_yaml(src) else "coco"
        raise DetkitError("cannot tell the dataset format of this file", hint=LAYOUTS, path=src)
    if is_detkit_dataset(src):
        return "yolo" if _is_yolo_yaml(src / "dataset.yaml") else "coco"
    for name in ("data.yaml", "data.yml"):
        if (src / name).is_file():
            return "yolo"
    if is_voc(src):
        return "voc"
    if (src / "annotations").is_dir() and any((src / "annotations").glob("*.json")):
        return "coco"
    raise DetkitError(
        "cannot tell the dataset format of this folder",
        hint=LAYOUTS + "; or give the format (src_format)",
        path=src,
        params="src_format",
    )
