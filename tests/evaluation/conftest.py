"""A tiny on-disk dataset (a few small PNGs with boxes) and an oracle detector for the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from detkit.data.classmap import ClassMap
from detkit.data.dataset import dataset_yaml_dict
from detkit.evaluation.detections import DetectionTable
from detkit.evaluation.predictions import write_predictions

CLASS_MAP = ClassMap(("cat", "dog", "bird"), (1, 5, 9))


def write_tiny_dataset(root: Path, n_images: int = 6, seed: int = 0) -> Path:
    """``root/dataset.yaml`` with a 'val' split of ``n_images`` 96x64 PNGs; returns the yaml path."""
    import cv2

    rng = np.random.default_rng(seed)
    (root / "images" / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for i in range(1, n_images + 1):
        img = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / "val" / f"im{i}.png"), img)
        images.append({"id": i, "file_name": f"im{i}.png", "width": 96, "height": 64})
        for _ in range(1 + i % 3):
            w, h = rng.uniform(8, 40), rng.uniform(8, 30)
            x, y = rng.uniform(0, 96 - w), rng.uniform(0, 64 - h)
            cat = int(CLASS_MAP.category_ids[len(anns) % 3])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    coco = {"images": images, "annotations": anns, "categories": CLASS_MAP.to_coco_categories()}
    (root / "annotations" / "val.json").write_text(json.dumps(coco))
    spec = dataset_yaml_dict("tiny", CLASS_MAP, {"val": ("images/val", "annotations/val.json")})
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root / "dataset.yaml"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Read-only: tests write their outputs elsewhere."""
    return write_tiny_dataset(tmp_path_factory.mktemp("eval") / "tiny")


@pytest.fixture(scope="session")
def oracle_predictions(tiny_dataset) -> Path:
    path = tiny_dataset.parent / "oracle_predictions.json"
    write_predictions(path, oracle_table(json.loads((tiny_dataset.parent / "annotations" / "val.json").read_text())))
    return path


@pytest.fixture(scope="session")
def shared_eval_dir(tiny_dataset, oracle_predictions) -> Path:
    """One eval dir of the oracle predictions (read-only; copy it to modify it)."""
    from detkit.stages.evaluate import evaluate

    return evaluate(None, tiny_dataset, predictions=oracle_predictions, out=tiny_dataset.parent / "runs").dir


def oracle_table(coco: dict, drop_every: int = 4, seed: int = 0) -> DetectionTable:
    """Ground truth with jitter, one box in ``drop_every`` missed, plus a low-score false positive per image."""
    rng = np.random.default_rng(seed)
    anns = [a for k, a in enumerate(coco["annotations"]) if k % drop_every != drop_every - 1]
    boxes = np.asarray([a["bbox"] for a in anns]) + rng.normal(0, 1.0, (len(anns), 4))
    boxes[:, 2:] = np.abs(boxes[:, 2:])
    hits = DetectionTable(
        [a["image_id"] for a in anns], [a["category_id"] for a in anns], boxes, rng.uniform(0.5, 1.0, len(anns))
    )
    ids = [im["id"] for im in coco["images"]]
    fps = DetectionTable(
        ids,
        np.full(len(ids), CLASS_MAP.category_ids[0]),
        np.tile([1.0, 1.0, 6.0, 6.0], (len(ids), 1)),
        np.full(len(ids), 0.35),
    )
    return DetectionTable.concat([hits, fps])


class OracleDetector:
    """Stands in for detkit.api.Detector: answers from the ground truth, records the batches it saw."""

    def __init__(self, annotations: Path):
        self.coco = json.loads(Path(annotations).read_text())
        self.table = oracle_table(self.coco)
        self.class_map = CLASS_MAP
        self.batches: list[tuple[int, tuple[int, ...]]] = []

    def predict_table(self, images, image_ids, conf: float = 0.0) -> DetectionTable:
        assert all(isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.shape == (64, 96, 3) for im in images)
        self.batches.append((len(images), tuple(image_ids)))
        mask = np.isin(self.table.image_ids, image_ids) & (self.table.scores >= conf)
        return self.table.subset(mask)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised, very narrow RT-DETR checkpoint with the tiny dataset's classes (real model path)."""
    import torch

    from detkit.config.recipe import resolve_recipe
    from detkit.models.checkpoint import save_checkpoint
    from detkit.models.rtdetr.builder import build_model

    overrides = [
        "model.encoder_dim=32",
        "model.encoder_ffn_dim=64",
        "model.hidden_dim=32",
        "model.num_heads=4",
        "model.num_queries=20",
        "model.decoder_layers=1",
        "model.decoder_ffn_dim=64",
        "model.num_denoising=0",
        "model.depth_mult=0.34",
        "train.imgsz=64",
    ]
    recipe = resolve_recipe("recipe:rtdetr-r18", overrides=overrides)
    torch.manual_seed(0)
    model = build_model(recipe.model, len(CLASS_MAP)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(path, model=model.state_dict(), class_map=CLASS_MAP, recipe=recipe.model_dump(mode="json"))
