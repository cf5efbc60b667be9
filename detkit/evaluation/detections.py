"""A columnar table of detections in COCO terms: the currency between inference, metrics and calibration.

One row per detection: ``image_id``, ``category_id`` (the dataset's original id), ``bbox`` as COCO
``[x, y, w, h]`` in original-image pixels, and ``score``. Stored as numpy arrays so that metrics and
calibrators work on whole columns instead of Python loops over boxes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class DetectionTable:
    image_ids: np.ndarray  # int64 [N]
    category_ids: np.ndarray  # int64 [N]
    boxes: np.ndarray  # float64 [N, 4] COCO xywh, pixels
    scores: np.ndarray  # float64 [N]

    def __post_init__(self) -> None:
        self.image_ids = np.asarray(self.image_ids, dtype=np.int64).reshape(-1)
        self.category_ids = np.asarray(self.category_ids, dtype=np.int64).reshape(-1)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        n = len(self.image_ids)
        if not (len(self.category_ids) == len(self.boxes) == len(self.scores) == n):
            raise ValueError("DetectionTable columns must have the same length")

    def __len__(self) -> int:
        return len(self.image_ids)

    @classmethod
    def empty(cls) -> DetectionTable:
        return cls(np.zeros(0), np.zeros(0), np.zeros((0, 4)), np.zeros(0))

    @classmethod
    def concat(cls, tables: Iterable[DetectionTable]) -> DetectionTable:
        tables = list(tables)
        if not tables:
            return cls.empty()
        return cls(
            np.concatenate([t.image_ids for t in tables]),
            np.concatenate([t.category_ids for t in tables]),
            np.concatenate([t.boxes for t in tables]),
            np.concatenate([t.scores for t in tables]),
        )

    @classmethod
    def from_xyxy(
        cls, image_id: int, boxes_xyxy: np.ndarray, scores: np.ndarray, category_ids: np.ndarray
    ) -> DetectionTable:
        """Detections of one image with xyxy pixel boxes (what the post-processor returns)."""
        b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
        return cls(np.full(len(b), image_id), category_ids, xywh, scores)

    def subset(self, mask: np.ndarray | Sequence[int]) -> DetectionTable:
        return DetectionTable(self.image_ids[mask], self.category_ids[mask], self.boxes[mask], self.scores[mask])

    def with_scores(self, scores: np.ndarray) -> DetectionTable:
        return DetectionTable(self.image_ids, self.category_ids, self.boxes, scores)

    def boxes_xyxy(self) -> np.ndarray:
        return np.concatenate([self.boxes[:, :2], self.boxes[:, :2] + self.boxes[:, 2:]], axis=1)

    def to_coco_results(self) -> list[dict[str, Any]]:
        """COCO results format (what ``predictions.json`` holds)."""
        boxes = np.round(self.boxes, 4).tolist()
        scores = self.scores.tolist()  # full precision: rounding would create ranking ties
        return [
            {"image_id": int(i), "category_id": int(c), "bbox": b, "score": s}
            for i, c, b, s in zip(self.image_ids.tolist(), self.category_ids.tolist(), boxes, scores)
        ]
