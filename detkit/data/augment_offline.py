"""Augmentation applied offline: a PNG grid previewing the train pipeline, and augmented copies of a split written
as a dataset."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.augment import EpochAugmentation
from detkit.data.augment_config import AugmentConfig, augment_config_from_dict
from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, image_file, read_coco
from detkit.data.dataset import DatasetSpec, SplitSpec, load_dataset
from detkit.data.writer import DatasetWriter
from detkit.errors import DetkitError
from detkit.utils.atomic import atomic_write_bytes
from detkit.utils.draw import draw_boxes
from detkit.utils.progress import track


@dataclass
class _Sample:
    image_id: int
    path: Path
    boxes: np.ndarray  # float [n, 4] xyxy px
    codes: np.ndarray  # int64 [n]: label * 2 + iscrowd, so crowd flags travel through the pipeline
    size_wh: tuple[int, int]
    file_name: str


def _read_samples(split: SplitSpec, class_map: ClassMap) -> list[_Sample]:
    coco = read_coco(split.annotations)
    by_image = coco.annotations_by_image()
    samples = []
    for img in coco.images:
        iid = int(img["id"])
        anns = by_image.get(iid, [])
        xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        cids = np.asarray([a["category_id"] for a in anns], dtype=np.int64)
        try:
            labels = class_map.category_ids_to_labels(cids) if len(cids) else np.zeros(0, np.int64)
        except DetkitError as e:
            raise DetkitError(
                f"image id {iid}: {e.message}", hint="run `detkit data validate`", path=split.annotations
            ) from None
        crowd = np.asarray([int(a.get("iscrowd", 0)) for a in anns], dtype=np.int64)
        path = image_file(split.images, img["file_name"], split.annotations)
        size = (int(img.get("width") or 0), int(img.get("height") or 0))
        samples.append(_Sample(iid, path, xyxy, labels * 2 + crowd, size, img["file_name"]))
    return samples


def _seed_of(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def _load_rgb(path: Path) -> np.ndarray:
    from detkit.data.images import load_image

    return load_image(path)


def _loader(samples: list[_Sample], cached: tuple[int, np.ndarray] | None = None):
    """``load(i) -> (image, boxes, codes)`` over the samples (a mosaic loads three more images)."""

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = samples[i]
        image = cached[1] if cached is not None and cached[0] == i else _load_rgb(s.path)
        return image, s.boxes, s.codes

    return load


def preview_augmentations(
    dataset: str | Path | DatasetSpec,
    cfg: AugmentConfig | dict | None,
    n: int,
    out: str | Path,
    split: str = "train",
    seed: int = 0,
    imgsz: int | tuple[int, int] = 640,
    epoch: int | None = None,
    total_epochs: int | None = None,
) -> Path:
    """Write a PNG grid of ``n`` augmented samples (random images of ``split``) with boxes and class names."""
    import cv2

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DetkitError(f"n must be a positive number of samples, got {n!r}", params="n")
    ds = dataset if isinstance(dataset, DatasetSpec) else load_dataset(dataset)
    samples = _read_samples(ds.split(split), ds.class_map)
    if not samples:
        raise DetkitError(f"split '{split}' has no images to augment", path=ds.split(split).annotations)
    augment = EpochAugmentation(cfg, imgsz=imgsz, train=True, epoch=epoch, total_epochs=total_epochs)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(samples), size=n, replace=n > len(samples))
    tiles = []
    for k, idx in enumerate(track(picks, "augmenting")):
        image, boxes, codes = augment(int(idx), len(samples), _seed_of(seed, k, int(idx)), _loader(samples))
        tiles.append(draw_boxes(image, boxes, codes // 2, ds.class_map.names))
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    h, w = tiles[0].shape[:2]
    pad = 4
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tile
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise DetkitError("the preview is written as PNG: give a file name ending in .png", path=out)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV failure
        raise DetkitError("could not encode the preview PNG", path=out)
    return atomic_write_bytes(out, buf.tobytes())


def write_augmented_dataset(
    dataset: str | Path | DatasetSpec,
    cfg: AugmentConfig | dict | None,
    out: str | Path,
    copies: int,
    split: str = "train",
    seed: int = 0,
    imgsz: int | tuple[int, int] | None = None,
    overwrite: bool = False,
    jpeg_quality: int = 95,
) -> dict[str, Any]:
    """Write ``copies`` augmented versions of every image of ``split`` as a dataset (that one split) at ``out``.

    Each copy is stretched back to its source image's size unless ``imgsz`` is given. Boxes, labels and crowd
    flags follow the augmentation; ``area`` becomes the box area (segmentations are not carried).
    """
    import cv2

    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
        raise DetkitError(
            f"copies must be a positive number of augmented copies per image, got {copies!r}", params="copies"
        )
    ds = dataset if isinstance(dataset, DatasetSpec) else load_dataset(dataset)
    samples = _read_samples(ds.split(split), ds.class_map)
    if not samples:
        raise DetkitError(f"split '{split}' has no images to augment", path=ds.split(split).annotations)
    cfg = augment_config_from_dict(cfg) if not isinstance(cfg, AugmentConfig) else cfg
    transforms: dict[tuple[int, int], EpochAugmentation] = {}
    coco = CocoData(info={"description": f"{ds.name}: {copies} augmented copies of split '{split}' (seed {seed})"})
    cat_ids = np.asarray(ds.class_map.category_ids, dtype=np.int64)
    with DatasetWriter(out, ds.class_map, name=f"{ds.name}-augmented", overwrite=overwrite) as writer:
        for idx, s in enumerate(track(samples, f"augmenting {split}")):
            image = _load_rgb(s.path)
            hw = (
                (image.shape[0], image.shape[1])
                if imgsz is None
                else ((int(imgsz), int(imgsz)) if isinstance(imgsz, (int, np.integer)) else tuple(imgsz))
            )
            if hw not in transforms:
                transforms[hw] = EpochAugmentation(cfg, imgsz=hw, train=True)
            transform = transforms[hw]
            stem = Path(s.file_name).with_suffix("")
            load = _loader(samples, cached=(idx, image))
            for k in range(copies):
                aug, boxes, codes = transform(idx, len(samples), _seed_of(seed, idx, k), load)
                suffix = ".png" if s.path.suffix.lower() == ".png" else ".jpg"
                file_name = f"{stem.as_posix()}_aug{k}{suffix}"
                params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix == ".jpg" else []
                ok, buf = cv2.imencode(suffix, cv2.cvtColor(aug, cv2.COLOR_RGB2BGR), params)
                if not ok:  # pragma: no cover - OpenCV failure
                    raise DetkitError("could not encode an augmented image", path=s.path)
                writer.image_path(split, file_name).write_bytes(buf.tobytes())
                image_id = len(coco.images) + 1
                coco.images.append(
                    {
                        "id": image_id,
                        "file_name": file_name,
                        "width": int(aug.shape[1]),
                        "height": int(aug.shape[0]),
                        "source_image_id": s.image_id,
                        "augment_copy": k,
                    }
                )
                xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
                for box, code in zip(xywh, codes):
                    coco.annotations.append(
                        {
                            "id": len(coco.annotations) + 1,
                            "image_id": image_id,
                            "category_id": int(cat_ids[int(code) // 2]),
                            "bbox": [float(v) for v in box],
                            "area": float(box[2] * box[3]),
                            "iscrowd": int(code) % 2,
                        }
                    )
        writer.write_split(split, coco)
    return {
        "dataset": str(Path(out) / "dataset.yaml"),
        "split": split,
        "images": len(coco.images),
        "boxes": len(coco.annotations),
        "source_images": len(samples),
        "copies": copies,
    }
