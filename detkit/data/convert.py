"""Convert a dataset between COCO (the canonical detkit layout), YOLO, Pascal VOC and FiftyOne's formats.

Every conversion reads the source into the in-memory :class:`~detkit.data.formats.DatasetData` (COCO per split plus
the class map), reads every image header (which proves the files are images and fills sizes a format lacks) and
writes the target atomically: on any error nothing is left at ``out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from detkit.data.formats.base import DatasetData, check_categories, fill_image_sizes, write_detkit_dataset
from detkit.data.formats.coco_folder import read_coco_source
from detkit.data.formats.detect import detect_format
from detkit.data.formats.voc import read_voc, write_voc
from detkit.data.formats.yolo import read_yolo, write_yolo
from detkit.errors import DetkitError

FORMATS = ("coco", "yolo", "voc")
FIFTYONE_PREFIX = "fiftyone:"


@dataclass
class ConvertResult:
    out: Path
    src_format: str
    to: str
    class_names: list[str]
    category_ids: list[int]
    splits: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "from": self.src_format,
            "to": self.to,
            "classes": [{"name": n, "id": i} for n, i in zip(self.class_names, self.category_ids)],
            "splits": self.splits,
        }


def _check_format(value: str, option: str, allow_auto: bool) -> str:
    if value.startswith(FIFTYONE_PREFIX) and len(value) > len(FIFTYONE_PREFIX):
        return value
    allowed = (("auto",) if allow_auto else ()) + FORMATS
    if value not in allowed:
        choices = "|".join(allowed) + "|fiftyone:<TYPE>"
        raise DetkitError(f"{option} must be one of {choices}, got {value!r}")
    return value


def read_dataset(src: str | Path, src_format: str = "auto", images: str | Path | None = None, classes: Sequence[str] | None = None) -> tuple[DatasetData, str]:
    """Read any supported source into memory; returns the data and the format it was read as."""
    src = Path(src)
    fmt = _check_format(src_format, "--from", allow_auto=True)
    if fmt == "auto":
        fmt = detect_format(src)
    if images is not None and fmt != "coco":
        raise DetkitError(f"--images only applies to COCO sources, not {fmt}")
    if classes and fmt != "voc":
        raise DetkitError(f"--classes only applies to VOC sources, not {fmt} (which carry their class list)")
    if not src.exists():
        raise DetkitError("source not found", path=src)
    if fmt == "coco":
        data = read_coco_source(src, images=images)
        for split in data.splits.values():
            fill_image_sizes(split, src)
    elif fmt == "yolo":
        data = read_yolo(src)
    elif fmt == "voc":
        data = read_voc(src, classes=classes)
        for split in data.splits.values():
            fill_image_sizes(split, src)
    else:
        from detkit.data.formats.fiftyone_io import read_fiftyone

        data = read_fiftyone(src, fmt[len(FIFTYONE_PREFIX) :])
    check_categories(data, src)
    return data, fmt


def write_dataset(data: DatasetData, out: str | Path, to: str = "coco", overwrite: bool = False, link: bool = False) -> Path:
    to = _check_format(to, "--to", allow_auto=False)
    if to == "coco":
        return write_detkit_dataset(data, out, overwrite=overwrite, link=link)
    if to == "yolo":
        return write_yolo(data, out, overwrite=overwrite, link=link)
    if to == "voc":
        return write_voc(data, out, overwrite=overwrite, link=link)
    from detkit.data.formats.fiftyone_io import write_fiftyone

    return write_fiftyone(data, out, to[len(FIFTYONE_PREFIX) :], overwrite=overwrite)


def convert_dataset(
    src: str | Path,
    out: str | Path,
    to: str = "coco",
    src_format: str = "auto",
    images: str | Path | None = None,
    classes: Sequence[str] | None = None,
    overwrite: bool = False,
    link: bool = False,
) -> ConvertResult:
    """Convert ``src`` (read as ``src_format``, ``"auto"`` to detect) into ``out`` in format ``to``.

    ``to`` / ``src_format``: ``coco`` (a detkit ``dataset.yaml`` layout on output), ``yolo``, ``voc`` or
    ``fiftyone:<TYPE>`` (any ``fiftyone.types`` dataset type; needs the ``fiftyone`` extra).
    ``images``: the image folder of a plain COCO JSON source. ``classes``: class order for VOC sources.
    ``link``: hard-link images instead of copying them (same file system only; falls back to copying).
    """
    src, out = Path(src), Path(out)
    _check_format(to, "--to", allow_auto=False)
    src_root, out_abs = (src if src.is_dir() else src.parent).resolve(), out.resolve()
    if out_abs == src_root or out_abs in src_root.parents:
        raise DetkitError("the output folder may not be the source folder or contain it", hint="choose another OUT", path=out)
    if src_root in out_abs.parents and out.exists():
        raise DetkitError("the output folder may not replace part of the source", hint="choose another OUT", path=out)
    if out.exists() and not out.is_dir():
        raise DetkitError("exists and is not a folder", hint="choose another output path", path=out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DetkitError("output folder exists and is not empty", hint="remove it, choose another path or pass --overwrite", path=out)
    data, fmt = read_dataset(src, src_format, images=images, classes=classes)
    write_dataset(data, out, to=to, overwrite=overwrite, link=link)
    return ConvertResult(
        out=out,
        src_format=fmt,
        to=to,
        class_names=list(data.class_map.names),
        category_ids=list(data.class_map.category_ids),
        splits=data.summary(),
    )
