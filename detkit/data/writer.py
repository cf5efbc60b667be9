"""Write a canonical detkit dataset (dataset.yaml + COCO JSON per split + images) atomically.

Every producer of datasets (``convert``, ``synth``, ``split``, ``validate --fix``, ``augment``) writes through
:class:`DatasetWriter`, so the layout is the same everywhere and a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

import yaml

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, write_coco
from detkit.data.dataset import DATASET_FILE, dataset_yaml_dict
from detkit.errors import DetkitError
from detkit.utils.atomic import atomic_dir
from detkit.utils.paths import resolve_inside


def _user_text(text: str, tmp: Path, out: Path) -> str:
    """``text`` with the temporary folder's path replaced by the output path the user asked for."""
    for t, o in ((str(tmp.resolve()), str(out.resolve())), (str(tmp), str(out))):
        text = text.replace(t, o)
    return text


def _os_error(e: OSError, tmp: Path | None, out: Path) -> DetkitError:
    """An OSError while writing, in the user's terms: the output path for files under ``tmp``."""
    name = str(e.filename) if e.filename else None
    reason = e.strerror or type(e).__name__
    if tmp is None or name is None or _user_text(name, tmp, out) != name:
        where = _user_text(name, tmp, out) if tmp is not None and name is not None else str(out)
        return DetkitError(
            f"cannot write the output: {reason} ({where})", hint="check free space and permissions", path=out
        )
    return DetkitError(f"cannot read: {reason}", path=name)


@contextlib.contextmanager
def output_folder(
    out: str | Path, overwrite: bool = False, extra_files: Mapping[str, bytes] | None = None
) -> Iterator[Path]:
    """:func:`~detkit.utils.atomic.atomic_dir` for dataset writers: every error raised while writing names ``out``
    (never the temporary folder, which the user has never heard of), and ``extra_files`` (name -> bytes, e.g. a
    report) are written into the folder before it is renamed into place."""
    out = Path(out)
    tmp: Path | None = None
    try:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            yield tmp
            for name, data in (extra_files or {}).items():
                resolve_inside(tmp, name, what="report file").write_bytes(data)
    except DetkitError as e:
        text = f"{e.message}\n{e.hint or ''}"
        if tmp is None or (str(tmp) not in text and str(tmp.resolve()) not in text):
            raise
        raise DetkitError(
            _user_text(e.message, tmp, out), hint=_user_text(e.hint, tmp, out) if e.hint else None
        ) from None
    except OSError as e:
        raise _os_error(e, tmp, out) from None


class DatasetWriter:
    """Context manager writing a dataset into a temporary folder that becomes ``out`` on success.

    Usage::

        with DatasetWriter(out, class_map, name="synth") as w:
            w.image_path("train", "000001.jpg")            # where to save a generated image
            w.add_image_file("train", "a/b.jpg", src)      # or copy/link an existing file
            w.write_split("train", coco)                  # categories are taken from the class map
    """

    def __init__(
        self,
        out: str | Path,
        class_map: ClassMap,
        name: str = "dataset",
        overwrite: bool = False,
        link: bool = False,
        extra_files: Mapping[str, bytes] | None = None,
    ):
        self.out = Path(out)
        self.extra_files = extra_files
        self.class_map = class_map
        self.name = name
        self.overwrite = overwrite
        self.link = link
        self._ctx = None
        self.tmp: Path | None = None
        self._splits: dict[str, tuple[str, str]] = {}

    def __enter__(self) -> DatasetWriter:
        self._ctx = output_folder(self.out, overwrite=self.overwrite, extra_files=self.extra_files)
        self.tmp = self._ctx.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        assert self._ctx is not None
        if exc_type is None:
            try:
                self._write_yaml()
            except BaseException as e:  # the temporary folder goes too (and the message names OUT)
                if not self._ctx.__exit__(type(e), e, e.__traceback__):
                    raise
                return False
        return bool(self._ctx.__exit__(exc_type, exc, tb))

    def _root(self) -> Path:
        if self.tmp is None:
            raise RuntimeError("DatasetWriter used outside its 'with' block")
        return self.tmp

    def images_dir(self, split: str) -> Path:
        d = self._root() / "images" / split
        d.mkdir(parents=True, exist_ok=True)
        return d

    def image_path(self, split: str, file_name: str) -> Path:
        dst = resolve_inside(self.images_dir(split), file_name, what="file_name")
        dst.parent.mkdir(parents=True, exist_ok=True)
        return dst

    def add_image_file(self, split: str, file_name: str, src: str | Path) -> Path:
        src = Path(src)
        if not src.is_file():
            raise DetkitError("image file not found", path=src)
        dst = self.image_path(split, file_name)
        if self.link:
            try:
                os.link(src, dst)
                return dst
            except OSError:
                pass
        shutil.copyfile(src, dst)
        return dst

    def write_split(self, split: str, coco: CocoData) -> Path:
        coco.categories = self.class_map.to_coco_categories()
        self.images_dir(split)
        ann_rel = f"annotations/{split}.json"
        path = write_coco(self._root() / ann_rel, coco)
        self._splits[split] = (f"images/{split}", ann_rel)
        return path

    def _write_yaml(self) -> None:
        if not self._splits:
            raise DetkitError("no split was written", path=self.out)
        order = {s: i for i, s in enumerate(("train", "val", "calib", "test"))}
        splits = dict(sorted(self._splits.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))
        text = yaml.safe_dump(
            dataset_yaml_dict(self.name, self.class_map, splits), sort_keys=False, default_flow_style=None
        )
        (self._root() / DATASET_FILE).write_text(text, encoding="utf-8")
