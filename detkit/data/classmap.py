"""The class map: class names in model order (contiguous labels 0..K-1) and their original category ids.

It travels with every artifact (dataset.yaml, checkpoints, calibrators, exported models) so that a label
index can always be turned back into the dataset's category id, and mismatches are caught early.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detkit.errors import DetkitError


@dataclass(frozen=True)
class ClassMap:
    names: tuple[str, ...]
    category_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.category_ids):
            raise DetkitError(f"class map has {len(self.names)} names but {len(self.category_ids)} category ids")
        if len(self.names) == 0:
            raise DetkitError("class map is empty: a dataset needs at least one class")
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise DetkitError(f"class map has duplicate class names: {', '.join(dup)}")
        if len(set(self.category_ids)) != len(self.category_ids):
            dup = sorted({c for c in self.category_ids if self.category_ids.count(c) > 1})
            raise DetkitError(f"class map has duplicate category ids: {dup}")

    @classmethod
    def from_names(cls, names: Sequence[str], first_id: int = 1) -> ClassMap:
        return cls(tuple(names), tuple(range(first_id, first_id + len(names))))

    @classmethod
    def from_coco_categories(cls, categories: Sequence[Mapping[str, Any]]) -> ClassMap:
        """Model order = categories sorted by id (the convention of every COCO tool)."""
        cats = sorted(categories, key=lambda c: int(c["id"]))
        return cls(tuple(str(c["name"]) for c in cats), tuple(int(c["id"]) for c in cats))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClassMap:
        return cls(tuple(str(n) for n in d["names"]), tuple(int(i) for i in d["category_ids"]))

    def to_dict(self) -> dict[str, list]:
        return {"names": list(self.names), "category_ids": list(self.category_ids)}

    def to_coco_categories(self) -> list[dict[str, Any]]:
        return [
            {"id": cid, "name": name, "supercategory": "object"} for name, cid in zip(self.names, self.category_ids)
        ]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def category_to_label(self) -> dict[int, int]:
        return {cid: i for i, cid in enumerate(self.category_ids)}

    def labels_to_category_ids(self, labels: np.ndarray) -> np.ndarray:
        """Vectorised label index -> original category id."""
        lut = np.asarray(self.category_ids, dtype=np.int64)
        return lut[np.asarray(labels, dtype=np.int64)]

    def category_ids_to_labels(self, category_ids: np.ndarray) -> np.ndarray:
        """Vectorised category id -> label index; raises on ids not in the map."""
        cids = np.asarray(category_ids, dtype=np.int64)
        known = np.asarray(self.category_ids, dtype=np.int64)
        order = np.argsort(known)
        pos = np.searchsorted(known[order], cids)
        pos = np.clip(pos, 0, len(known) - 1)
        ok = known[order][pos] == cids
        if not np.all(ok):
            bad = sorted(set(cids[~ok].tolist()))[:5]
            raise DetkitError(f"unknown category ids {bad} (class map has {list(self.category_ids)})")
        return order[pos]

    def describe(self) -> str:
        shown = ", ".join(f"{i}:{n}(id {c})" for i, (n, c) in enumerate(zip(self.names, self.category_ids)))
        return f"{len(self)} classes [{shown}]" if len(self) <= 12 else f"{len(self)} classes [{shown[:200]}...]"

    def check_same(
        self, other: ClassMap, mine: str, theirs: str, hint: str | None = None, params: str | Sequence[str] = ()
    ) -> None:
        """Raise a clear error naming both class maps unless they are identical (``params``: see DetkitError)."""
        if self == other:
            return
        raise DetkitError(
            f"class map mismatch: {mine} has {self.describe()} but {theirs} has {other.describe()}",
            hint=hint,
            params=params,
        )
