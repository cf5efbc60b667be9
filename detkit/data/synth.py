"""The embedded default dataset: seeded scenes of coloured shapes on textured backgrounds.

Every image is a pure function of ``(seed, split, index)``, so a dataset is reproducible bit for bit and
growing one split never changes another. Shapes are rasterised as hard masks (no anti-aliasing) and later
shapes may partly hide earlier ones; each box is the tight box of the pixels of the shape that stay visible,
so the labels are exact. ``area`` is that visible pixel count (COCO's segmentation-area convention).

With ``domains=True`` the test scenes are re-rendered in six styles imitating COCO-O's domains and written in
its on-disk layout under ``OUT/coco_o/`` (see :mod:`detkit.data.styles`).

With ``small=True`` the same shapes are drawn as a small-object variant (:data:`SMALL`): large images (1024 px by
default) holding 20-60 objects of 8-32 px each, the setting where sliced inference (:mod:`detkit.slicing`) pays.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, write_coco
from detkit.data.styles import DOMAINS, apply_style
from detkit.data.writer import DatasetWriter
from detkit.errors import DetkitError
from detkit.utils.progress import track

CLASSES = ("circle", "square", "triangle", "star", "cross")
SPLITS = ("train", "val", "calib", "test")
COCO_O_DIR = "coco_o"

# Object size: the extent of the shape as a fraction of the image side, drawn log-uniformly.
MIN_SIZE, MAX_SIZE = 0.05, 0.45
# A shape may lose at most this fraction of its pixels to shapes drawn over it.
MAX_OCCLUDED = 0.5
_MIN_CONTRAST = 60.0  # minimal RGB distance between an object's colour and the background under it


@dataclass(frozen=True)
class Variant:
    """Defaults of one flavour of the synthetic data. ``size_px`` fixes object extents in pixels (else
    :data:`MIN_SIZE`..:data:`MAX_SIZE` of the image side); ``stream`` keeps the variants' random streams apart."""

    name: str
    imgsz: int
    min_objects: int
    max_objects: int
    empty_fraction: float
    size_px: tuple[float, float] | None
    stream: int | None


STANDARD = Variant("standard", 256, 1, 8, 0.03, None, None)
# many small objects on large images: extents of 8-32 px are COCO "small" (area < 32²) boxes
SMALL = Variant("small", 1024, 20, 60, 0.0, (8.0, 32.0), 1)


@dataclass
class Scene:
    """One rendered image and its exact labels (boxes are xyxy pixel edges, labels index ``CLASSES``)."""

    image: np.ndarray  # uint8 HxWx3 RGB
    boxes: np.ndarray  # float64 [n, 4] xyxy
    labels: np.ndarray  # int64 [n]
    areas: np.ndarray  # int64 [n] visible pixels
    owner: np.ndarray  # int16 HxW: index of the object that owns each pixel, -1 for background


# --------------------------------------------------------------------------- shapes


def _unit_polygon(label: int, rng: np.random.Generator) -> np.ndarray:
    """Vertices of a shape of radius 1 centred on the origin, randomly rotated ([k, 2] float)."""
    rot = rng.uniform(0, 2 * np.pi)
    name = CLASSES[label]
    if name == "circle":
        t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        r = np.ones_like(t)
    elif name == "square":
        t = np.pi / 4 + np.arange(4) * np.pi / 2
        r = np.ones_like(t)
    elif name == "triangle":
        t = np.arange(3) * 2 * np.pi / 3
        r = np.ones_like(t)
    elif name == "star":
        t = np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
    elif name == "cross":
        a = rng.uniform(0.28, 0.4)  # half arm width
        xs = np.array([a, a, 1, 1, a, a, -a, -a, -1, -1, -a, -a])
        ys = np.array([1, a, a, -a, -a, -1, -1, -a, -a, a, a, 1])
        t = np.arctan2(ys, xs)
        r = np.hypot(xs, ys) / np.sqrt(1 + a * a)  # farthest vertex at radius 1
    else:  # pragma: no cover - CLASSES is fixed
        raise ValueError(name)
    pts = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    if name != "circle":  # a mild stretch for box-shape variety; circles stay circles
        limit = 1.3 if name == "square" else 1.6
        stretch = np.exp(rng.uniform(-np.log(limit), np.log(limit)))
        pts = pts * (np.sqrt(stretch), 1 / np.sqrt(stretch))
        pts /= np.hypot(pts[:, 0], pts[:, 1]).max()
    c, s = np.cos(rot), np.sin(rot)
    return pts @ np.array([[c, s], [-s, c]])


def _shape_mask(
    label: int, cx: float, cy: float, radius: float, hw: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Rasterise a shape (hard edges) into a bool patch covering its bounding box clipped to the image."""
    pts = _unit_polygon(label, rng) * radius + (cx, cy)
    x0, y0 = np.maximum(np.floor(pts.min(axis=0)).astype(int) - 1, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + 2, hw[1])
    y1 = min(int(np.ceil(pts[:, 1].max())) + 2, hw[0])
    patch = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=np.uint8)
    shift = 4  # sub-pixel vertex precision
    if patch.size:
        local = np.round((pts - (x0, y0)) * (1 << shift)).astype(np.int32)
        cv2.fillPoly(patch, [local], 1, lineType=cv2.LINE_8, shift=shift)
    return patch.astype(bool), (slice(y0, y1), slice(x0, x1))


# --------------------------------------------------------------------------- textures


def _smooth_noise(rng: np.random.Generator, hw: tuple[int, int], cells: int, channels: int = 3) -> np.ndarray:
    """Value noise: a coarse random grid upsampled bicubically (float32 HxWxC, roughly in [0, 1])."""
    grid = rng.random((cells, cells, channels), dtype=np.float32)
    out = cv2.resize(grid, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)
    return out.reshape(hw[0], hw[1], channels)


def _random_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], dtype=np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """A textured background (float32 HxWx3 in [0, 255]): noise, gradients, stripes, checks and clutter."""
    h, w = hw
    c1 = _random_colour(rng, (0.0, 0.7), (0.2, 0.95))
    c2 = _random_colour(rng, (0.0, 0.7), (0.2, 0.95))
    kind = rng.integers(4)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    if kind == 0:  # multi-octave colour noise
        t = 0.6 * _smooth_noise(rng, hw, int(rng.integers(3, 6))) + 0.4 * _smooth_noise(
            rng, hw, int(rng.integers(8, 24))
        )
        img = c1 * (1 - t) + c2 * t
    elif kind == 1:  # linear gradient plus fine noise
        ang = rng.uniform(0, 2 * np.pi)
        g = (np.cos(ang) * xx + np.sin(ang) * yy) / max(h, w)
        g = (g - g.min()) / max(float(np.ptp(g)), 1e-6)
        img = c1 * (1 - g[..., None]) + c2 * g[..., None]
        img += 40 * (_smooth_noise(rng, hw, int(rng.integers(16, 40)), 1) - 0.5)
    elif kind == 2:  # stripes / waves
        ang = rng.uniform(0, np.pi)
        period = rng.uniform(0.03, 0.25) * max(h, w)
        phase = (np.cos(ang) * xx + np.sin(ang) * yy) * (2 * np.pi / period)
        s = 0.5 + 0.5 * np.sin(phase + 2.0 * _smooth_noise(rng, hw, 4, 1)[..., 0])
        img = c1 * (1 - s[..., None] * 0.6) + c2 * (s[..., None] * 0.6)
    else:  # checks, softened
        cell = rng.uniform(0.04, 0.2) * max(h, w)
        chk = ((xx // cell + yy // cell) % 2).astype(np.float32)
        chk = cv2.GaussianBlur(chk, (0, 0), 1.0)
        img = c1 * (1 - 0.5 * chk[..., None]) + c2 * (0.5 * chk[..., None])
    img = np.ascontiguousarray(img, dtype=np.float32)
    # unlabelled clutter: a few thin lines and arcs, low contrast
    mean = np.asarray(cv2.mean(img)[:3])
    for _ in range(int(rng.integers(0, 5))):
        col = tuple(float(v) for v in np.clip(mean + rng.normal(0, 45, 3), 0, 255))
        p1 = tuple(int(v) for v in rng.integers(0, (w, h)))
        if rng.random() < 0.5:
            p2 = tuple(int(v) for v in rng.integers(0, (w, h)))
            cv2.line(img, p1, p2, col, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            ax = (int(rng.integers(4, max(5, w // 3))), int(rng.integers(4, max(5, h // 3))))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(img, p1, ax, 0.0, start, start + float(rng.uniform(40, 160)), col, 1, cv2.LINE_AA)
    return img


def _paint_object(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Fill ``mask`` in ``img`` (float32 patches, in place) with a shaded, sometimes textured, contrasting colour."""
    bg = img[mask].mean(axis=0)
    for _ in range(10):
        colour = _random_colour(rng, (0.35, 1.0), (0.35, 1.0))
        if np.linalg.norm(colour - bg) >= _MIN_CONTRAST:
            break
    else:
        colour = np.where(bg > 127, 20.0, 235.0).astype(np.float32)
    ys, xs = np.nonzero(mask)
    x0, y0 = xs.min(), ys.min()
    span = max(int(xs.max() - x0), int(ys.max() - y0), 1)
    ang = rng.uniform(0, 2 * np.pi)
    shade = ((xs - x0) * np.cos(ang) + (ys - y0) * np.sin(ang)) / span  # in about [-1.4, 1.4]
    pix = colour[None, :] * (1.0 + rng.uniform(0.0, 0.25) * shade[:, None])
    if rng.random() < 0.3:  # a printed pattern on the object
        period = rng.uniform(3.0, 8.0)
        stripes = np.sin((xs * np.cos(ang + 1) + ys * np.sin(ang + 1)) * (2 * np.pi / period))
        pix *= (1.0 + 0.15 * stripes)[:, None]
    img[ys, xs] = pix
    if rng.random() < 0.35:  # a dark or light rim, inside the shape so the box stays exact
        rim = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        img[rim] = colour * (0.35 if rng.random() < 0.7 else 1.6)


# --------------------------------------------------------------------------- scenes


def render_scene(
    rng: np.random.Generator,
    imgsz: int | tuple[int, int],
    min_objects: int = 1,
    max_objects: int = 8,
    empty_fraction: float = 0.03,
    size_px: tuple[float, float] | None = None,
) -> Scene:
    """Draw one scene. ``imgsz`` is the side (or ``(H, W)``). Object extents are drawn log-uniformly in
    ``size_px`` pixels when given, else in :data:`MIN_SIZE`..:data:`MAX_SIZE` of the shorter side."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    side = min(h, w)
    lo, hi = (size_px[0] / side, size_px[1] / side) if size_px is not None else (MIN_SIZE, MAX_SIZE)
    img = _background(rng, (h, w))
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    n_target = 0 if rng.random() < empty_fraction else int(rng.integers(min_objects, max_objects + 1))

    owner = np.full((h, w), -1, dtype=np.int16)  # which object owns each pixel (last drawn wins)
    full_area: list[int] = []
    visible = np.zeros(max_objects, dtype=np.int64)  # pixels each placed object still shows
    labels: list[int] = []
    for _ in range(n_target):
        for _attempt in range(12):
            label = int(rng.integers(len(CLASSES)))
            size = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            radius = size * side / 2
            margin = 0.6 * radius  # at least most of the shape lies inside the image
            cx = rng.uniform(margin, w - margin)
            cy = rng.uniform(margin, h - margin)
            mask, window = _shape_mask(label, cx, cy, radius, (h, w), rng)
            area = int(mask.sum())
            if area < 9:
                continue
            covered = owner[window][mask]
            lost = np.bincount(covered[covered >= 0], minlength=len(labels))[: len(labels)]
            if np.any(visible[: len(labels)] - lost < (1 - MAX_OCCLUDED) * np.asarray(full_area, dtype=np.float64)):
                continue
            visible[: len(labels)] -= lost
            owner[window][mask] = len(labels)
            visible[len(labels)] = area
            full_area.append(area)
            labels.append(label)
            _paint_object(img[window], mask, rng)
            break

    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1, 6))
    image = np.clip(img, 0, 255).astype(np.uint8)
    boxes, areas = _visible_boxes(owner, len(labels))
    return Scene(image=image, boxes=boxes, labels=np.asarray(labels, dtype=np.int64), areas=areas, owner=owner)


def _visible_boxes(owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Tight xyxy boxes (pixel edges) and pixel counts of each object's visible pixels."""
    boxes = np.zeros((n, 4), dtype=np.float64)
    if n == 0:
        return boxes, np.zeros(0, dtype=np.int64)
    ys, xs = np.nonzero(owner >= 0)
    ids = owner[ys, xs].astype(np.int64)
    areas = np.bincount(ids, minlength=n)
    x0 = np.full(n, np.iinfo(np.int64).max)
    y0 = np.full(n, np.iinfo(np.int64).max)
    x1 = np.full(n, -1)
    y1 = np.full(n, -1)
    np.minimum.at(x0, ids, xs)
    np.minimum.at(y0, ids, ys)
    np.maximum.at(x1, ids, xs)
    np.maximum.at(y1, ids, ys)
    boxes[:] = np.stack([x0, y0, x1 + 1, y1 + 1], axis=1)
    return boxes, areas


def scene_rng(seed: int, split: str, index: int, variant: Variant = STANDARD) -> np.random.Generator:
    """The generator of one image: independent of every other image and of the split sizes."""
    key = [int(seed), SPLITS.index(split) if split in SPLITS else 99, int(index)]
    return np.random.default_rng(key if variant.stream is None else [*key, variant.stream])


# --------------------------------------------------------------------------- dataset


def synth_class_map() -> ClassMap:
    return ClassMap.from_names(CLASSES, first_id=1)


def _coco_entries(
    image_id: int,
    file_name: str,
    labels: np.ndarray,
    boxes: np.ndarray,
    areas: np.ndarray,
    next_ann_id: int,
    hw: tuple[int, int],
) -> tuple[dict, list[dict]]:
    image = {"id": image_id, "file_name": file_name, "width": hw[1], "height": hw[0]}
    xywh = boxes.copy()
    xywh[:, 2:] -= xywh[:, :2]
    anns = [
        {
            "id": next_ann_id + k,
            "image_id": image_id,
            "category_id": int(lab) + 1,
            "bbox": [float(v) for v in box],
            "area": float(area),
            "iscrowd": 0,
        }
        for k, (lab, box, area) in enumerate(zip(labels, xywh, areas))
    ]
    return image, anns


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV failure
        raise DetkitError("could not encode JPEG", path=path)
    path.write_bytes(buf.tobytes())


@dataclass(frozen=True)
class _Job:
    """Everything one worker needs to render one image (and its styled copies) and write the JPEGs."""

    seed: int
    split: str
    index: int
    hw: tuple[int, int]
    min_objects: int
    max_objects: int
    empty_fraction: float
    quality: int
    path: Path
    domain_paths: tuple[tuple[str, Path], ...]
    variant: Variant = STANDARD


def _run_job(job: _Job) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scene = render_scene(
        scene_rng(job.seed, job.split, job.index, job.variant),
        job.hw,
        job.min_objects,
        job.max_objects,
        job.empty_fraction,
        job.variant.size_px,
    )
    _write_jpeg(job.path, scene.image, job.quality)
    for domain, path in job.domain_paths:
        style_rng = np.random.default_rng([job.seed, 1000 + DOMAINS.index(domain), job.index])
        _write_jpeg(path, apply_style(domain, scene.image, style_rng), job.quality)
    return scene.labels, scene.boxes, scene.areas


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _auto_workers(n_images: int) -> int:
    if n_images < 400:  # starting processes costs more than it saves
        return 1
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1), 8))


def generate_synthetic(
    out: str | Path,
    train: int = 1500,
    val: int = 200,
    calib: int = 200,
    test: int = 200,
    imgsz: int | None = None,
    domains: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    min_objects: int | None = None,
    max_objects: int | None = None,
    empty_fraction: float | None = None,
    jpeg_quality: int = 95,
    workers: int = 1,
    small: bool = False,
) -> Path:
    """Write the synthetic shapes dataset to ``out`` (``dataset.yaml``, COCO JSON per split, JPEG images).

    Splits with 0 images are left out. With ``domains`` the test split is also rendered in the six COCO-O
    styles under ``out/coco_o/<domain>/{val2017, annotations/instances_val2017.json}`` (same ids and boxes).
    ``workers`` processes render in parallel (0: one per CPU core for large sets; the CLI's default); the files
    do not depend on it. Parallel workers are spawned processes, so scripts calling this with ``workers != 1``
    need the usual ``if __name__ == "__main__":`` guard. Returns ``out``. The folder appears only once everything
    was written.

    ``small`` writes the small-object variant (:data:`SMALL`: 8-32 px objects, 20-60 per image, 1024 px images by
    default). ``imgsz``, ``min_objects``, ``max_objects`` and ``empty_fraction`` left as None take the variant's
    defaults (:data:`STANDARD` or :data:`SMALL`).
    """
    variant = SMALL if small else STANDARD
    imgsz = variant.imgsz if imgsz is None else imgsz
    min_objects = variant.min_objects if min_objects is None else min_objects
    max_objects = variant.max_objects if max_objects is None else max_objects
    empty_fraction = variant.empty_fraction if empty_fraction is None else empty_fraction
    counts = {"train": train, "val": val, "calib": calib, "test": test}
    for name, n in counts.items():
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise DetkitError(f"{name} must be a non-negative integer number of images, got {n!r}", params=name)
    if sum(counts.values()) == 0:
        raise DetkitError(
            "nothing to generate: every split has 0 images", hint="e.g. train=100, val=20", params=("train", "val")
        )
    if not isinstance(imgsz, (int, np.integer)) or isinstance(imgsz, bool) or not 32 <= imgsz <= 4096:
        raise DetkitError(f"imgsz must be an integer between 32 and 4096, got {imgsz!r}", params="imgsz")
    if variant.size_px is not None and imgsz < 2 * variant.size_px[1]:
        raise DetkitError(
            f"imgsz {imgsz} is too small for the small-object variant (objects up to {variant.size_px[1]:g} px)",
            hint=f"use imgsz {int(2 * variant.size_px[1])} or more",
            params="imgsz",
        )
    if not 0 <= min_objects <= max_objects:
        raise DetkitError(
            f"object counts must satisfy 0 <= min_objects <= max_objects, got {min_objects}..{max_objects}"
        )
    if not 0.0 <= empty_fraction <= 1.0:
        raise DetkitError(f"empty_fraction must be in [0, 1], got {empty_fraction}")
    if not 1 <= jpeg_quality <= 100:
        raise DetkitError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    if domains and test == 0:
        raise DetkitError(
            "domains renders the test split in six styles, but test is 0",
            hint="give test N > 0 images",
            params=("domains", "test"),
        )
    if workers < 0:
        raise DetkitError(f"workers must be >= 0 (0 = automatic), got {workers}", params="workers")

    hw = (int(imgsz), int(imgsz))
    class_map = synth_class_map()
    n_workers = workers or _auto_workers(sum(counts.values()) + (len(DOMAINS) * test if domains else 0))
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(DatasetWriter(out, class_map, name="synth", overwrite=overwrite))
        pool = None
        if n_workers > 1:
            ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold threads
            pool = ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker)
            # on errors drop the queued work at once, and stop writing before the writer removes its folder
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        for split, n in counts.items():
            if n == 0:
                continue
            domain_dirs = _domain_dirs(writer, split == "test" and domains)
            jobs = [
                _Job(
                    int(seed),
                    split,
                    i,
                    hw,
                    min_objects,
                    max_objects,
                    empty_fraction,
                    jpeg_quality,
                    writer.image_path(split, f"{i + 1:06d}.jpg"),
                    tuple((d, ddir / "val2017" / f"{i + 1:06d}.jpg") for d, ddir in domain_dirs.items()),
                    variant,
                )
                for i in range(n)
            ]
            results = pool.map(_run_job, jobs, chunksize=8) if pool is not None else map(_run_job, jobs)
            info = {"description": f"detkit synthetic shapes ({variant.name}), seed {seed}, split {split}"}
            coco = CocoData(info=info)
            for job, (labels, boxes, areas) in zip(jobs, track(results, f"synth {split}", total=n)):
                image, anns = _coco_entries(
                    job.index + 1, job.path.name, labels, boxes, areas, len(coco.annotations) + 1, hw
                )
                coco.images.append(image)
                coco.annotations.extend(anns)
            writer.write_split(split, coco)
            for d, ddir in domain_dirs.items():
                dcoco = CocoData(
                    images=coco.images,
                    annotations=coco.annotations,
                    categories=class_map.to_coco_categories(),
                    info={"description": f"detkit synthetic shapes, test split in the '{d}' style (COCO-O layout)"},
                )
                write_coco(ddir / "annotations" / "instances_val2017.json", dcoco)
    return Path(out)


def _domain_dirs(writer: DatasetWriter, enabled: bool) -> dict[str, Path]:
    if not enabled:
        return {}
    assert writer.tmp is not None
    dirs = {d: writer.tmp / COCO_O_DIR / d for d in DOMAINS}
    for d in dirs.values():
        (d / "val2017").mkdir(parents=True, exist_ok=True)
        (d / "annotations").mkdir(parents=True, exist_ok=True)
    return dirs
