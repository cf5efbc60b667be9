"""Convert a dataset between COCO (the canonical detkit layout), YOLO, Pascal VOC and FiftyOne's formats.

Every conversion reads the source into the in-memory :class:`~detkit.data.formats.DatasetData` (COCO per split plus
the class map), reads every image header (which proves the files are images and fills sizes a format lacks), checks
every record with the validator's rules (:func:`detkit.data.validate.validate_data`; errors are refused or, with
``skip_invalid``, left out and listed in ``<out>/convert_report.json``) and writes the target atomically: on any
error nothing is left at ``out``, and no message names the temporary folder it is written in.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detkit.data.formats.base import DatasetData, write_detkit_dataset
from detkit.data.formats.reader import FIFTYONE_PREFIX, FORMATS, check_format, read_source
from detkit.data.formats.voc import write_voc
from detkit.data.formats.yolo import write_yolo
from detkit.data.validate import ValidationReport, drop_invalid, validate_data
from detkit.errors import DetkitError

__all__ = [
    "FORMATS",
    "FIFTYONE_PREFIX",
    "REPORT_FILE",
    "ConvertResult",
    "convert_dataset",
    "read_dataset",
    "write_dataset",
]

REPORT_FILE = "convert_report.json"


@dataclass
class ConvertResult:
    out: Path
    src_format: str
    to: str
    class_names: list[str]
    category_ids: list[int]
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)  # validator warnings by check
    dropped: list[dict[str, Any]] = field(default_factory=list)  # records left out (skip_invalid)
    report: Path | None = None  # <out>/convert_report.json (skip_invalid)

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "from": self.src_format,
            "to": self.to,
            "classes": [{"name": n, "id": i} for n, i in zip(self.class_names, self.category_ids)],
            "splits": self.splits,
            "warnings": self.warnings,
            "dropped": len(self.dropped),
            "report": str(self.report) if self.report is not None else None,
        }


def read_dataset(
    src: str | Path, src_format: str = "auto", images: str | Path | None = None, classes: Sequence[str] | None = None
) -> tuple[DatasetData, str, ValidationReport]:
    """Read any supported source and check it with the validator's rules (image headers only, no full decode).

    Returns the data, the format it was read as, and the validation report (nothing is refused here)."""
    data, fmt = read_source(src, src_format, images=images, classes=classes)
    # YOLO and FiftyOne readers have read every image header already (they need the sizes)
    report = validate_data(data, src, fmt, files=fmt in ("coco", "voc"), decode=False)
    return data, fmt, report


def _refusal(report: ValidationReport) -> DetkitError:
    errors = report.errors
    first, others = errors[0], Counter(f.check for f in errors[1:])
    more = ""
    if others:
        more = f"; and {len(errors) - 1} other error(s): " + ", ".join(f"{n} {c}" for c, n in others.most_common())
    return DetkitError(
        f"{first.line()} ({first.check}){more}",
        hint=f"nothing was written; see them all with 'detkit data validate {report.source}', "
        "or leave them out with skip_invalid",
        params="skip_invalid",
    )


def _report_file(src: Path, fmt: str, to: str, report: ValidationReport, dropped: list[dict[str, Any]]) -> bytes:
    doc = {
        "source": str(src),
        "from": fmt,
        "to": to,
        "rules": "detkit data validate (errors)",
        "dropped": [
            {
                "split": d["split"],
                "file": d["file"],
                "record": d["record"],
                "rule": d["check"],
                "message": d["message"],
                "action": d["action"],
                "image_id": d["image_id"],
                "ann_id": d["ann_id"],
            }
            for d in dropped
        ],
        "warnings": {c: v["count"] for c, v in report.counts().items() if v["severity"] == "warning"},
    }
    return (json.dumps(doc, indent=1, default=str) + "\n").encode("utf-8")


def write_dataset(
    data: DatasetData,
    out: str | Path,
    to: str = "coco",
    overwrite: bool = False,
    link: bool = False,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    to = check_format(to, "to", allow_auto=False)
    if to == "coco":
        return write_detkit_dataset(data, out, overwrite=overwrite, link=link, extra_files=extra_files)
    if to == "yolo":
        return write_yolo(data, out, overwrite=overwrite, link=link, extra_files=extra_files)
    if to == "voc":
        return write_voc(data, out, overwrite=overwrite, link=link, extra_files=extra_files)
    from detkit.data.formats.fiftyone_io import write_fiftyone

    return write_fiftyone(data, out, to[len(FIFTYONE_PREFIX) :], overwrite=overwrite, extra_files=extra_files)


def convert_dataset(
    src: str | Path,
    out: str | Path,
    to: str = "coco",
    src_format: str = "auto",
    images: str | Path | None = None,
    classes: Sequence[str] | None = None,
    overwrite: bool = False,
    link: bool = False,
    skip_invalid: bool = False,
) -> ConvertResult:
    """Convert ``src`` (read as ``src_format``, ``"auto"`` to detect) into ``out`` in format ``to``.

    ``to`` / ``src_format``: ``coco`` (a detkit ``dataset.yaml`` layout on output), ``yolo``, ``voc`` or
    ``fiftyone:<TYPE>`` (any ``fiftyone.types`` dataset type; needs the ``fiftyone`` extra).
    ``images``: the image folder of a plain COCO JSON source. ``classes``: class order for VOC sources.
    ``link``: hard-link images instead of copying them (same file system only; falls back to copying).

    What was read is checked with ``detkit data validate``'s rules before anything is written: errors are refused
    (one line naming the user's file and record, and how many others there are) unless ``skip_invalid``, which
    leaves the records they name out and lists each in ``<out>/convert_report.json``. Warnings pass (counted in
    ``ConvertResult.warnings``).
    """
    src, out = Path(src), Path(out)
    check_format(to, "to", allow_auto=False)
    src_root, out_abs = (src if src.is_dir() else src.parent).resolve(), out.resolve()
    if out_abs == src_root or out_abs in src_root.parents:
        raise DetkitError(
            "the output folder may not be the source folder or contain it", hint="choose another OUT", path=out
        )
    if src_root in out_abs.parents and out.exists():
        raise DetkitError("the output folder may not replace part of the source", hint="choose another OUT", path=out)
    if out.exists() and not out.is_dir():
        raise DetkitError("exists and is not a folder", hint="choose another output path", path=out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DetkitError(
            "output folder exists and is not empty",
            hint="remove it, choose another path or set overwrite",
            path=out,
            params="overwrite",
        )
    data, fmt, report = read_dataset(src, src_format, images=images, classes=classes)
    if report.errors and not skip_invalid:
        raise _refusal(report)
    fixed, dropped = drop_invalid(report)
    for name, coco in fixed.items():
        data.splits[name].coco = coco
        data.splits[name].origins = None  # positions no longer match
    extra = {REPORT_FILE: _report_file(src, fmt, to, report, dropped)} if skip_invalid else None
    write_dataset(data, out, to=to, overwrite=overwrite, link=link, extra_files=extra)
    return ConvertResult(
        out=out,
        src_format=fmt,
        to=to,
        class_names=list(data.class_map.names),
        category_ids=list(data.class_map.category_ids),
        splits=data.summary(),
        warnings={c: v["count"] for c, v in report.counts().items() if v["severity"] == "warning"},
        dropped=dropped,
        report=out / REPORT_FILE if skip_invalid else None,
    )
