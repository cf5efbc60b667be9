"""PyTorch data pipeline for training and validation over one dataset split.

``DetectionDataset`` reads the split's COCO file once (``read_coco``), keeps every image (background images
included), drops crowd boxes for training, clamps boxes to the image, keeps boxes with positive size and maps
category ids to model labels with the dataset's :class:`ClassMap`. Images go through the augmentation
pipeline of :mod:`detkit.data.augment` (resized to ``imgsz``) and come out as uint8 CHW tensors; targets carry
labels and normalised cxcywh boxes, the model's training contract.

Randomness is a pure function of ``(seed, epoch, index)``: the sampler order is seeded per epoch and every
sample's augmentation (including which images join a mosaic) is seeded from its own index, and a batch's mixup from
its images' ids, so a resumed run sees exactly the same batches whatever the number of workers or processes.

MixUp (``augment.mixup``, DEIM's dense one-to-one matching) runs in :class:`Collate`, on the collated uint8 batch,
so it comes before the trainer's multi-scale resize.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from detkit.data.classmap import ClassMap
from detkit.data.coco import image_file, read_coco
from detkit.data.dataset import SplitSpec
from detkit.errors import DetkitError


@dataclass(frozen=True)
class _Record:
    image_id: int
    path: Path
    boxes: np.ndarray  # float32 [n, 4] xyxy pixels
    labels: np.ndarray  # int64 [n]
    orig_wh: tuple[int, int]


def sample_seed(*parts: int) -> int:
    """A stable 32-bit seed from integers (independent of Python's hash randomisation)."""
    digest = hashlib.blake2b(np.asarray(parts, dtype=np.int64).tobytes(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def read_split_records(split: SplitSpec, class_map: ClassMap, drop_crowd: bool = True) -> list[_Record]:
    """Per-image boxes (clamped, xyxy) and labels of a split; the category set must match the class map."""
    coco = read_coco(split.annotations)
    known = set(class_map.category_ids)
    by_image = coco.annotations_by_image()
    records: list[_Record] = []
    for img in coco.images:
        iid = int(img["id"])
        w, h = img.get("width"), img.get("height")
        if not w or not h:
            raise DetkitError(
                f"image id {iid} has no width/height", hint="run `detkit data validate --fix`", path=split.annotations
            )
        anns = [a for a in by_image.get(iid, []) if not (drop_crowd and a.get("iscrowd", 0))]
        unknown = sorted({int(a["category_id"]) for a in anns} - known)
        if unknown:
            raise DetkitError(
                f"image id {iid} uses category ids {unknown} that the dataset's class map does not have",
                hint="fix the annotations or the classes in dataset.yaml",
                path=split.annotations,
            )
        xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        xyxy = np.clip(xyxy, 0, [w, h, w, h])
        keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        cids = np.asarray([a["category_id"] for a in anns], dtype=np.int64)[keep]
        labels = class_map.category_ids_to_labels(cids).astype(np.int64) if cids.size else np.zeros(0, np.int64)
        records.append(
            _Record(
                iid,
                image_file(split.images, img["file_name"], split.annotations),
                xyxy[keep].astype(np.float32),
                labels,
                (int(w), int(h)),
            )
        )
    return records


class DetectionDataset(Dataset):
    """One split, augmented for training (``train=True``) or only resized for validation."""

    def __init__(
        self,
        split: SplitSpec,
        class_map: ClassMap,
        imgsz: int | tuple[int, int],
        augment: Any = None,
        train: bool = True,
        total_epochs: int | None = None,
        seed: int = 0,
    ):
        self.split = split
        self.class_map = class_map
        self.imgsz = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
        self.augment = augment
        self.train = train
        self.total_epochs = total_epochs
        self.seed = seed
        self.records = read_split_records(split, class_map, drop_crowd=train)
        if not self.records:
            raise DetkitError(f"split '{split.name}' has no images", path=split.annotations)
        self.epoch = 0
        self._transform = None

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """The augmentation policy depends on the epoch (stop epoch of the heavy ops, docs/rt-detr.md §6.5; DEIM's
        policy epochs, docs/training.md)."""
        self.epoch = int(epoch)
        self._transform = None

    def _get_transform(self):
        if self._transform is None:
            from detkit.data.augment import EpochAugmentation

            self._transform = EpochAugmentation(
                self.augment, imgsz=self.imgsz, train=self.train, epoch=self.epoch, total_epochs=self.total_epochs
            )
        return self._transform

    def mixup_now(self) -> Any:
        """The ``augment.mixup`` settings when this epoch's batches are mixed, else None."""
        if not self.train:
            return None
        transform = self._get_transform()
        return transform.cfg.mixup if transform.policy is not None and transform.policy.mixup else None

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from detkit.data.images import load_image

        rec = self.records[index]
        try:
            image = load_image(rec.path)
        except DetkitError:
            raise
        except Exception as e:  # noqa: BLE001 - an unreadable image is a data error, named
            raise DetkitError(f"cannot read image id {rec.image_id}: {e}", path=rec.path) from None
        return image, rec.boxes.copy(), rec.labels.copy()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rec = self.records[index]
        transform = self._get_transform()
        seed = sample_seed(self.seed, self.epoch, index)
        image, boxes, labels = transform(index, len(self.records), seed, self._load)
        h, w = image.shape[:2]
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        xyxy = boxes / scale
        cxcywh = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
        target = {
            "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
            "boxes": cxcywh,
            "image_id": torch.tensor(rec.image_id),
            "orig_size": torch.tensor(rec.orig_wh),  # (w, h)
        }
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), target


def collate(
    batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Stack uint8 images ``[B, 3, H, W]``; targets stay a list (images may have no boxes)."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def mixup_batch(
    images: torch.Tensor, targets: list[dict[str, torch.Tensor]], p: float, beta: tuple[float, float], seed: int
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """With probability ``p``: ``image_i = round(b * image_i + (1 - b) * image_{i-1})`` for every image (the first
    with the last), ``b ~ U(beta)`` once per batch, uint8 in and out, and each target gets the labels and boxes of
    both images. A batch of one image is left as it is."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x6D6978])
    if len(targets) < 2 or rng.random() >= p:
        return images, targets
    b = float(rng.uniform(*beta))
    mixed = images.float().mul_(b).add_(images.roll(1, dims=0).float().mul_(1.0 - b)).round_().clamp_(0, 255)
    out = []
    for t, prev in zip(targets, targets[-1:] + targets[:-1]):
        out.append(
            {**t, "labels": torch.cat([t["labels"], prev["labels"]]), "boxes": torch.cat([t["boxes"], prev["boxes"]])}
        )
    return mixed.to(torch.uint8), out


class Collate:
    """:func:`collate`, then the batch's mixup when the dataset's epoch has one (seeded by the epoch and the batch's
    image ids, so it does not depend on workers or processes)."""

    def __init__(self, dataset: DetectionDataset):
        self.dataset = dataset

    def __call__(
        self,
        batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        images, targets = collate(batch)
        mix = self.dataset.mixup_now()
        if mix is None:
            return images, targets
        ids = [int(t["image_id"]) for t in targets]
        seed = sample_seed(self.dataset.seed, self.dataset.epoch, -2, *ids)
        return mixup_batch(images, targets, mix.p, mix.beta, seed)


class EpochLoader:
    """A DataLoader whose order and augmentation are seeded per epoch: call ``set_epoch`` before iterating."""

    def __init__(
        self,
        dataset: DetectionDataset,
        batch_size: int,
        shuffle: bool,
        workers: int = 0,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.dataset = dataset
        self.seed = seed
        if world_size > 1:
            self.sampler = DistributedSampler(
                dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
            )
        else:
            self.sampler = _SeededRandomSampler(dataset, seed) if shuffle else SequentialSampler(dataset)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=Collate(dataset),
            drop_last=drop_last,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


class _SeededRandomSampler(RandomSampler):
    """A random permutation that depends only on ``(seed, epoch)``."""

    def __init__(self, data_source: Dataset, seed: int):
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(sample_seed(self.seed, self.epoch, -1))
        yield from torch.randperm(len(self.data_source), generator=g).tolist()
