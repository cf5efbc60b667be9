"""``dataset.yaml``: the canonical dataset contract every stage reads.

Layout written by detkit (other layouts are fine as long as the paths stay inside the root)::

    <root>/dataset.yaml
    <root>/images/<split>/<file_name>         # file_name as in the split's COCO JSON
    <root>/annotations/<split>.json           # COCO detection JSON

``dataset.yaml``::

    detkit_dataset: 1
    name: synth
    classes:                     # model order: label i is the i-th entry
      - {name: circle, id: 1}    # id = the original COCO category_id
    splits:
      train: {images: images/train, annotations: annotations/train.json}
      val:   {images: images/val,   annotations: annotations/val.json}

Paths are relative to the file and may never resolve outside its folder.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.utils.files import pydantic_error_line, read_yaml
from detkit.utils.paths import resolve_inside

DATASET_FILE = "dataset.yaml"
FORMAT_VERSION = 1
KNOWN_SPLITS = ("train", "val", "calib", "test")


class _ClassEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1)
    id: int


class _SplitEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    images: str
    annotations: str


class _DatasetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    detkit_dataset: int = FORMAT_VERSION
    name: str = "dataset"
    classes: list[_ClassEntry] = Field(min_length=1)
    splits: dict[str, _SplitEntry] = Field(min_length=1)


class SplitSpec(BaseModel):
    """Resolved, absolute paths of one split."""

    model_config = ConfigDict(frozen=True)
    name: str
    images: Path
    annotations: Path


class DatasetSpec(BaseModel):
    """A loaded, path-checked ``dataset.yaml``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    path: Path
    root: Path
    name: str
    class_map: ClassMap
    splits: dict[str, SplitSpec]

    def split(self, name: str) -> SplitSpec:
        if name not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DetkitError(f"dataset has no split '{name}' (it has: {have})", path=self.path)
        return self.splits[name]

    def has_split(self, name: str) -> bool:
        return name in self.splits

    @property
    def num_classes(self) -> int:
        return len(self.class_map)


def dataset_yaml_dict(name: str, class_map: ClassMap, splits: dict[str, tuple[str, str]]) -> dict:
    """The plain dict written to ``dataset.yaml`` (split -> (images dir, annotations file), both relative)."""
    return {
        "detkit_dataset": FORMAT_VERSION,
        "name": name,
        "classes": [{"name": n, "id": c} for n, c in zip(class_map.names, class_map.category_ids)],
        "splits": {s: {"images": img, "annotations": ann} for s, (img, ann) in splits.items()},
    }


def load_dataset(path: str | Path, check_exists: bool = True) -> DatasetSpec:
    """Load and check a ``dataset.yaml`` (or a folder containing one)."""
    path = Path(path)
    if path.is_dir():
        path = path / DATASET_FILE
    raw = read_yaml(path, what="dataset file")
    if not isinstance(raw, dict):
        raise DetkitError("dataset file must be a mapping with 'classes' and 'splits'", path=path)
    try:
        parsed = _DatasetFile.model_validate(raw)
    except ValidationError as e:
        raise DetkitError(f"invalid dataset file: {pydantic_error_line(e)}", path=path) from None
    if parsed.detkit_dataset != FORMAT_VERSION:
        raise DetkitError(
            f"unsupported dataset format version {parsed.detkit_dataset} (this detkit reads {FORMAT_VERSION})",
            path=path,
        )
    try:
        class_map = ClassMap(tuple(c.name for c in parsed.classes), tuple(c.id for c in parsed.classes))
    except DetkitError as e:
        raise DetkitError(e.message, path=path) from None
    root = path.parent.resolve()
    splits: dict[str, SplitSpec] = {}
    for split_name, entry in parsed.splits.items():
        images = resolve_inside(root, entry.images, source=path, what=f"splits.{split_name}.images")
        annotations = resolve_inside(root, entry.annotations, source=path, what=f"splits.{split_name}.annotations")
        if check_exists:
            if not images.is_dir():
                raise DetkitError(f"splits.{split_name}.images: folder {entry.images!r} does not exist", path=path)
            if not annotations.is_file():
                raise DetkitError(
                    f"splits.{split_name}.annotations: file {entry.annotations!r} does not exist", path=path
                )
        splits[split_name] = SplitSpec(name=split_name, images=images, annotations=annotations)
    return DatasetSpec(path=path.resolve(), root=root, name=parsed.name, class_map=class_map, splits=splits)
