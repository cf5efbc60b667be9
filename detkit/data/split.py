"""Seeded, class-stratified re-splitting of a dataset into train / val / calib / test.

All images of the source dataset are pooled (whatever splits it has), then assigned so that every split gets
its exact share of images and, as closely as integers allow, the same share of every class:

1. Each image gets a stratum: the rarest class it contains (by number of images in the pool), or "background"
   for images without boxes. Stratifying on the rarest class protects the classes that are easiest to lose.
2. Images are ordered stratum by stratum (shuffled with the seed inside each stratum).
3. Split slots are interleaved along that order: the j-th image of split s ideally sits at position
   ``(j + u_s) * N / n_s`` (``u_s`` a seeded offset), and sorting all slots by that position gives the split of
   each place. Every run of consecutive images, hence every stratum, is shared out in proportion, and the split
   sizes are exact.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.coco import CocoData, image_file, read_coco
from detkit.data.dataset import KNOWN_SPLITS, DatasetSpec, load_dataset
from detkit.data.writer import DatasetWriter
from detkit.errors import DetkitError
from detkit.utils.progress import track

DEFAULT_RATIOS = {"train": 0.8, "val": 0.1, "calib": 0.05, "test": 0.05}
REST = "rest"


def _check_split_name(name: str, option: str) -> None:
    if name not in KNOWN_SPLITS:
        close = difflib.get_close_matches(name, KNOWN_SPLITS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"split names are {', '.join(KNOWN_SPLITS)}"
        raise DetkitError(f"{option}: unknown split name '{name}'", hint=hint, params=option)


def _parse_pairs(spec: str | Mapping[str, Any], option: str) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        pairs = dict(spec)
    else:
        pairs = {}
        for item in (p.strip() for p in str(spec).split(",")):
            if not item:
                continue
            if "=" not in item:
                raise DetkitError(
                    f"{option}: expected name=value pairs like 'train=0.8,val=0.2', got '{item}'", params=option
                )
            name, value = (s.strip() for s in item.split("=", 1))
            if name in pairs:
                raise DetkitError(f"{option}: split '{name}' is given twice", params=option)
            pairs[name] = value
    if not pairs:
        raise DetkitError(f"{option}: no splits given", params=option)
    for name in pairs:
        _check_split_name(name, option)
    return pairs


def parse_ratios(spec: str | Mapping[str, Any]) -> dict[str, float]:
    """``"train=0.8,val=0.1,calib=0.05,test=0.05"`` (or a dict) → fractions that must sum to 1."""
    out: dict[str, float] = {}
    for name, value in _parse_pairs(spec, "ratios").items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise DetkitError(f"ratios: '{name}={value}' is not a number", params="ratios") from None
        if not np.isfinite(v) or v < 0:
            raise DetkitError(f"ratios: '{name}={value}' must be a finite number >= 0", params="ratios")
        out[name] = v
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise DetkitError(
            f"ratios must sum to 1, they sum to {total:g}",
            hint="e.g. train=0.8,val=0.1,calib=0.05,test=0.05",
            params="ratios",
        )
    return out


def parse_counts(spec: str | Mapping[str, Any]) -> dict[str, int | str]:
    """``"val=100,calib=50,test=50,train=rest"`` (or a dict) → image counts; at most one split may be ``rest``."""
    out: dict[str, int | str] = {}
    for name, value in _parse_pairs(spec, "counts").items():
        if isinstance(value, str) and value.strip().lower() == REST:
            out[name] = REST
            continue
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            v = int(value)
        except (TypeError, ValueError):
            raise DetkitError(f"counts: '{name}={value}' is not a whole number (or 'rest')", params="counts") from None
        if v < 0:
            raise DetkitError(f"counts: '{name}={value}' must be >= 0", params="counts")
        out[name] = v
    if sum(1 for v in out.values() if v == REST) > 1:
        raise DetkitError("counts: only one split can take the 'rest' of the images", params="counts")
    return out


def target_sizes(
    n_images: int, ratios: Mapping[str, float] | None = None, counts: Mapping[str, int | str] | None = None
) -> dict[str, int]:
    """Exact number of images per split: ratios by largest remainder, or counts (``rest`` fills up)."""
    if (ratios is None) == (counts is None):
        raise DetkitError("give either ratios or counts, not both" if ratios is not None else "give ratios or counts")
    if ratios is not None:
        names = list(ratios)
        ideal = np.array([ratios[n] for n in names]) * n_images
        sizes = np.floor(ideal).astype(np.int64)
        short = n_images - int(sizes.sum())
        order = np.argsort(-(ideal - sizes), kind="stable")
        sizes[order[:short]] += 1
        by_name = {n: int(s) for n, s in zip(names, sizes)}
        return {n: by_name[n] for n in KNOWN_SPLITS if n in by_name}
    assert counts is not None
    fixed = sum(v for v in counts.values() if v != REST)
    if fixed > n_images:
        raise DetkitError(f"counts ask for {fixed} images but the dataset has only {n_images}", params="counts")
    sizes = {n: (n_images - fixed if v == REST else int(v)) for n, v in counts.items()}
    return {n: sizes[n] for n in KNOWN_SPLITS if n in sizes}


def image_strata(labels_per_image: list[np.ndarray], num_classes: int) -> np.ndarray:
    """The stratum of each image: its rarest class (by image frequency), or ``num_classes`` if it has no boxes."""
    n = len(labels_per_image)
    lengths = np.fromiter((len(x) for x in labels_per_image), dtype=np.int64, count=n)
    flat = np.concatenate(labels_per_image) if n and lengths.sum() else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(n), lengths)
    pairs = np.unique(owner * num_classes + flat)  # each (image, class) once
    freq = np.bincount(pairs % num_classes, minlength=num_classes)
    # rank classes from rarest (0) to most common; ties by label
    rank = np.empty(num_classes, np.int64)
    rank[np.lexsort((np.arange(num_classes), freq))] = np.arange(num_classes)
    best = np.full(n, num_classes, dtype=np.int64)  # rank per image; num_classes = no boxes
    np.minimum.at(best, pairs // num_classes, rank[pairs % num_classes])
    inverse = np.argsort(rank)  # rank -> class
    return np.where(best < num_classes, inverse[np.minimum(best, num_classes - 1)], num_classes)


def assign_splits(strata: np.ndarray, sizes: Mapping[str, int], seed: int = 0) -> np.ndarray:
    """Index into ``list(sizes)`` for each image (-1: not used when the sizes leave images over)."""
    n = len(strata)
    rng = np.random.default_rng(seed)
    names = list(sizes)
    used = sum(sizes.values())
    # order: strata one after another, shuffled inside each (random key, then stable sort by stratum)
    order = np.lexsort((rng.random(n), strata))
    slots_key = []
    slots_split = []
    for s, name in enumerate(names):
        k = sizes[name]
        if k:
            slots_key.append((np.arange(k) + rng.random()) * (used / k))
            slots_split.append(np.full(k, s, dtype=np.int64))
    sequence = (
        np.concatenate(slots_split)[np.argsort(np.concatenate(slots_key), kind="stable")]
        if slots_key
        else np.zeros(0, np.int64)
    )
    out = np.full(n, -1, dtype=np.int64)
    if used < n:
        # the images left over are spread evenly too: take `used` of the ordered images at regular steps
        pick = (
            np.floor((np.arange(used) + rng.random()) * (n / used)).astype(np.int64) if used else np.zeros(0, np.int64)
        )
        out[order[pick]] = sequence
    else:
        out[order] = sequence
    return out


@dataclass
class _PooledImage:
    split: str
    image: dict[str, Any]
    annotations: list[dict[str, Any]]
    path: Path


def _pool(ds: DatasetSpec) -> list[_PooledImage]:
    pooled: list[_PooledImage] = []
    for name, spec in ds.splits.items():
        coco = read_coco(spec.annotations)
        by_image = coco.annotations_by_image()
        known = set(by_image)
        for ann in coco.annotations:
            if int(ann["image_id"]) not in known:
                raise DetkitError(
                    f"annotation id {ann['id']} refers to unknown image id {ann['image_id']}",
                    hint="run `detkit data validate --fix` first",
                    path=spec.annotations,
                )
        for img in coco.images:
            path = image_file(spec.images, img["file_name"], spec.annotations)
            pooled.append(_PooledImage(name, img, by_image[int(img["id"])], path))
    return pooled


def split_dataset(
    dataset: str | Path | DatasetSpec,
    out: str | Path,
    ratios: str | Mapping[str, Any] | None = None,
    counts: str | Mapping[str, Any] | None = None,
    seed: int = 0,
    link: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Pool every split of ``dataset``, re-split it class-stratified, and write the result to ``out``.

    ``ratios`` (fractions summing to 1, default 0.8/0.1/0.05/0.05 for train/val/calib/test) or ``counts``
    (image numbers; one split may be ``"rest"``). Images are hard-linked when possible (``link``), else copied.
    Image and annotation ids and file names are kept unless pooling several splits makes them collide; then
    they are renumbered, and file names get their source split as a folder prefix.
    Returns a summary: the output ``dataset.yaml``, and images, boxes and images per class for each split.
    """
    if ratios is not None and counts is not None:
        raise DetkitError("give either ratios or counts, not both", params=("ratios", "counts"))
    ratio_map = parse_ratios(ratios) if ratios is not None else (None if counts is not None else dict(DEFAULT_RATIOS))
    count_map = parse_counts(counts) if counts is not None else None
    ds = dataset if isinstance(dataset, DatasetSpec) else load_dataset(dataset)
    pooled = _pool(ds)
    if not pooled:
        raise DetkitError("the dataset has no images to split", path=ds.path)
    sizes = target_sizes(len(pooled), ratio_map, count_map)

    cat_to_label = ds.class_map.category_to_label()
    labels_per_image = []
    for p in pooled:
        labs = [cat_to_label.get(int(a["category_id"]), -1) for a in p.annotations]
        if -1 in labs:
            bad = next(a for a in p.annotations if int(a["category_id"]) not in cat_to_label)
            raise DetkitError(
                f"annotation id {bad['id']} has category id {bad['category_id']} which is not in the class map",
                hint="run `detkit data validate` to see all problems",
                path=ds.split(p.split).annotations,
            )
        labels_per_image.append(np.asarray(labs, dtype=np.int64))
    k = len(ds.class_map)
    strata = image_strata(labels_per_image, k)
    assignment = assign_splits(strata, sizes, seed)

    multi = len(ds.splits) > 1
    names_unique = len({p.image["file_name"] for p in pooled}) == len(pooled)
    ids_unique = len({int(p.image["id"]) for p in pooled}) == len(pooled)
    ann_ids = [int(a["id"]) for p in pooled for a in p.annotations]
    ann_ids_unique = len(set(ann_ids)) == len(ann_ids)

    split_names = list(sizes)
    summary: dict[str, Any] = {"splits": {}, "unassigned_images": int((assignment < 0).sum()), "seed": seed}
    with DatasetWriter(out, ds.class_map, name=ds.name, overwrite=overwrite, link=link) as writer:
        for s, name in enumerate(split_names):
            members = np.flatnonzero(assignment == s)
            if len(members) == 0:
                continue
            coco = CocoData(info={"description": f"{ds.name}: split '{name}' (stratified, seed {seed})"})
            next_ann = 1
            for new_id, idx in enumerate(track(members, f"writing {name}"), start=1):
                p = pooled[int(idx)]
                file_name = p.image["file_name"] if (names_unique or not multi) else f"{p.split}/{p.image['file_name']}"
                writer.add_image_file(name, file_name, p.path)
                image = dict(p.image, file_name=file_name, id=int(p.image["id"]) if ids_unique else new_id)
                coco.images.append(image)
                for a in p.annotations:
                    coco.annotations.append(
                        dict(a, image_id=image["id"], id=int(a["id"]) if ann_ids_unique else next_ann)
                    )
                    next_ann += 1
            writer.write_split(name, coco)
            labs = (
                np.concatenate([labels_per_image[int(i)] for i in members]) if len(members) else np.zeros(0, np.int64)
            )
            owners = np.repeat(members, [len(labels_per_image[int(i)]) for i in members])
            per_class = (
                np.bincount(np.unique(owners * k + labs) % k, minlength=k) if len(labs) else np.zeros(k, np.int64)
            )
            summary["splits"][name] = {
                "images": int(len(members)),
                "boxes": int(len(labs)),
                "images_per_class": per_class.tolist(),
            }
    summary["dataset"] = str(Path(out) / "dataset.yaml")
    summary["classes"] = list(ds.class_map.names)
    summary["skipped_splits"] = [n for n in split_names if sizes[n] == 0]
    return summary
