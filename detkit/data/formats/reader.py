"""Read any supported source (COCO, YOLO, VOC, ``fiftyone:<TYPE>``) into the in-memory :class:`DatasetData`.

Readers check structure only (files that parse, lines with the right number of values, known class names); what
the values mean (boxes, ids, image files) is judged by :mod:`detkit.data.validate`, the same rules for
``detkit data validate`` and ``detkit data convert``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from detkit.data.formats.base import DatasetData
from detkit.data.formats.coco_folder import read_coco_source
from detkit.data.formats.detect import detect_format
from detkit.data.formats.voc import read_voc
from detkit.data.formats.yolo import read_yolo
from detkit.errors import DetkitError

FORMATS = ("coco", "yolo", "voc")
FIFTYONE_PREFIX = "fiftyone:"


def check_format(value: str, option: str, allow_auto: bool) -> str:
    if value.startswith(FIFTYONE_PREFIX) and len(value) > len(FIFTYONE_PREFIX):
        return value
    allowed = (("auto",) if allow_auto else ()) + FORMATS
    if value not in allowed:
        choices = "|".join(allowed) + "|fiftyone:<TYPE>"
        raise DetkitError(f"{option} must be one of {choices}, got {value!r}", params=option)
    return value


def read_source(
    src: str | Path, src_format: str = "auto", images: str | Path | None = None, classes: Sequence[str] | None = None
) -> tuple[DatasetData, str]:
    """Read ``src`` as ``src_format`` (``"auto"``: detected); returns the data and the format it was read as."""
    src = Path(src)
    fmt = check_format(src_format, "src_format", allow_auto=True)
    if fmt == "auto":
        fmt = detect_format(src)
    if images is not None and fmt != "coco":
        raise DetkitError(f"images only applies to COCO sources, not {fmt}", params="images")
    if classes and fmt != "voc":
        raise DetkitError(
            f"classes only applies to VOC sources, not {fmt} (which carry their class list)", params="classes"
        )
    if not src.exists():
        raise DetkitError("source not found", path=src)
    if fmt == "coco":
        return read_coco_source(src, images=images), fmt
    if fmt == "yolo":
        return read_yolo(src), fmt
    if fmt == "voc":
        return read_voc(src, classes=classes), fmt
    from detkit.data.formats.fiftyone_io import read_fiftyone

    return read_fiftyone(src, fmt[len(FIFTYONE_PREFIX) :]), fmt
