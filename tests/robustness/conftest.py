"""Fixtures for the robustness tests: a detector whose accuracy falls as its input departs from the clean image."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from detkit.data.classmap import ClassMap
from detkit.data.dataset import load_dataset
from detkit.evaluation.detections import DetectionTable


class DegradingOracle:
    """Stands in for ``detkit.api.Detector``: answers with the ground truth of the reference split, each box
    shifted by a quarter of the mean absolute difference between the image it is given and the clean image
    of the same id. Clean images score AP 100; corrupted or restyled ones score less, more for stronger shifts."""

    def __init__(self, annotations: Path, images_dir: Path, class_map: ClassMap):
        coco = json.loads(Path(annotations).read_text())
        self.class_map = class_map
        self.clean = {
            im["id"]: cv2.cvtColor(cv2.imread(str(Path(images_dir) / im["file_name"])), cv2.COLOR_BGR2RGB).astype(
                np.float32
            )
            for im in coco["images"]
        }
        self.boxes: dict[int, list[tuple[int, list[float]]]] = {}
        for a in coco["annotations"]:
            self.boxes.setdefault(a["image_id"], []).append((a["category_id"], a["bbox"]))
        self.calls = 0

    def predict_table(self, images, image_ids, conf: float = 0.0) -> DetectionTable:
        self.calls += 1
        tables = []
        for image, image_id in zip(images, image_ids):
            assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            shift = float(np.abs(image.astype(np.float32) - self.clean[image_id]).mean()) / 4
            entries = self.boxes.get(image_id, [])
            if not entries:
                continue
            cats = [c for c, _ in entries]
            xywh = np.asarray([b for _, b in entries], dtype=np.float64)
            xywh[:, :2] += shift
            tables.append(DetectionTable(np.full(len(cats), image_id), cats, xywh, np.linspace(0.9, 0.5, len(cats))))
        return DetectionTable.concat(tables)


@pytest.fixture(scope="session")
def synth(synth_dataset):
    """The session's synthetic dataset (read-only), its test split and COCO-O root."""
    spec = load_dataset(synth_dataset)
    return spec


@pytest.fixture
def oracle(synth):
    split = synth.split("test")
    return DegradingOracle(split.annotations, split.images, synth.class_map)
