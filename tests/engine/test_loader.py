"""The training data pipeline: crowd boxes dropped, boxes clamped, background images kept, seeded order."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, write_coco
from detkit.data.dataset import SplitSpec
from detkit.data.loader import DetectionDataset, EpochLoader, read_split_records
from detkit.errors import DetkitError


@pytest.fixture
def split(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        cv2.imwrite(str(images / f"{i}.png"), np.full((40, 60, 3), 60 * i, np.uint8))
    coco = CocoData(
        images=[{"id": i + 1, "file_name": f"{i}.png", "width": 60, "height": 40} for i in range(4)],
        annotations=[
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 10], "area": 200, "iscrowd": 0},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 3,
                "bbox": [50, 30, 30, 30],
                "area": 900,
                "iscrowd": 0,
            },  # clamped to 10x10
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 30, 30], "area": 900, "iscrowd": 1},  # crowd
            {
                "id": 4,
                "image_id": 3,
                "category_id": 7,
                "bbox": [70, 10, 5, 5],
                "area": 25,
                "iscrowd": 0,
            },  # outside: dropped
        ],
        categories=[{"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
    )
    write_coco(tmp_path / "ann.json", coco)
    return SplitSpec(name="train", images=images, annotations=tmp_path / "ann.json")


def test_records_drop_crowd_clamp_and_keep_backgrounds(split):
    cm = ClassMap(("a", "b"), (3, 7))
    recs = read_split_records(split, cm, drop_crowd=True)
    assert [r.image_id for r in recs] == [1, 2, 3, 4]  # background images stay
    assert recs[0].labels.tolist() == [1, 0]
    assert recs[0].boxes.tolist() == [[10, 10, 30, 20], [50, 30, 60, 40]]
    assert len(recs[1].labels) == 0 and len(recs[2].labels) == 0 and len(recs[3].labels) == 0
    assert len(read_split_records(split, cm, drop_crowd=False)[1].labels) == 1  # evaluation keeps crowd


def test_unknown_category_is_a_clear_error(split):
    with pytest.raises(DetkitError, match=r"image id 1 uses category ids \[7\]"):
        read_split_records(split, ClassMap(("a",), (3,)), drop_crowd=True)


def test_samples_and_seeded_epoch_order(split):
    cm = ClassMap(("a", "b"), (3, 7))
    ds = DetectionDataset(split, cm, 32, train=True, total_epochs=2, seed=5)
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert target["boxes"].shape[1] == 4 and ((target["boxes"] >= 0) & (target["boxes"] <= 1)).all()
    assert target["labels"].dtype == torch.int64 and target["orig_size"].tolist() == [60, 40]
    again, target2 = ds[0]
    assert torch.equal(image, again) and torch.equal(target["boxes"], target2["boxes"])  # per-sample seeding

    def order(epoch):
        loader = EpochLoader(ds, batch_size=1, shuffle=True, seed=5)
        loader.set_epoch(epoch)
        return [int(t[0]["image_id"]) for _, t in loader]

    assert order(0) == order(0) and sorted(order(0)) == [1, 2, 3, 4]
    assert any(order(0) != order(e) for e in (1, 2, 3))
