"""COCO-C: render corrupted copies of a split once into a cache, evaluate a detector on each, mPC and rPC.

Cache layout (default ``~/.cache/detkit/coco_c``, or ``$XDG_CACHE_HOME/detkit/coco_c``)::

    <cache_dir>/<split fingerprint>-seed<seed>-v<CORRUPTIONS_VERSION>/
        cache_info.json                      # what the key stands for (for people)
        <corruption>/s<severity>/<image_id>.png
        <corruption>/s<severity>/done.json   # completion marker, written before the folder is renamed in
        <corruption>/.s<severity>.lock       # held while rendering: concurrent runs wait instead of racing

The key holds the split's fingerprint (a hash of its image and annotation entries and of the image files'
names and sizes), the seed and the corruption-definition version, so any change renders afresh while a
second run on the same data renders nothing. Each (corruption, severity) folder is built under a temporary
name and renamed into place when complete, so an interrupted run leaves no half folder and the next run
renders only the missing pieces. Images are stored as PNG (lossless: the only JPEG artefacts are those of
``jpeg_compression``).

Protocol (MMDetection's ``test_robustness.py``): the corruption acts on the original-resolution uint8 RGB image
before any resize; each image gets its own random stream derived from (seed, corruption, severity, image id),
so results are reproducible and independent of batch size and worker count.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, image_file
from detkit.errors import DetkitError
from detkit.evaluation.robustness.corruptions import BENCHMARK, CORRUPTIONS_VERSION, SEVERITIES, corrupt
from detkit.evaluation.robustness.metrics import (
    mean_ap,
    mean_performance_under_corruption,
    relative_performance_under_corruption,
)
from detkit.evaluation.robustness.scoring import Calibration, score_images
from detkit.utils.atomic import atomic_dir, atomic_write_json
from detkit.utils.progress import ProgressTask, track

DONE_MARKER = "done.json"
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast; corrupted images hardly compress anyway


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "detkit" / "coco_c"


def split_fingerprint(coco: CocoData, images_dir: Path, source: str | Path) -> str:
    """sha256 over the split's image entries, annotations and image file names + sizes."""
    h = hashlib.sha256()
    entries = [{k: im.get(k) for k in ("id", "file_name", "width", "height")} for im in coco.images]
    h.update(json.dumps(entries, sort_keys=True).encode())
    h.update(json.dumps(coco.annotations, sort_keys=True, default=str).encode())
    for im in coco.images:
        path = image_file(images_dir, im["file_name"], source)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DetkitError(
                f"image file not found: {path}", hint="check the split's images folder", path=source
            ) from None
        h.update(f"{im['file_name']}\0{size}\n".encode())
    return h.hexdigest()


def image_seed(seed: int, corruption: str, severity: int, image_id: int) -> np.random.Generator:
    """The random stream of one (corruption, severity, image): independent of order and parallelism."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed) % 2**63, BENCHMARK.index(corruption), int(severity), int(image_id) % 2**63])
    )


@dataclass
class CorruptionCache:
    """The rendered corruptions of one split under one (fingerprint, seed, version) key."""

    root: Path
    coco: CocoData
    images_dir: Path
    source: str | Path
    seed: int
    rendered: list[tuple[str, int]] = field(default_factory=list)
    reused: list[tuple[str, int]] = field(default_factory=list)
    images_rendered: int = 0

    def folder(self, corruption: str, severity: int) -> Path:
        return self.root / corruption / f"s{severity}"

    def is_complete(self, corruption: str, severity: int) -> bool:
        return (self.folder(corruption, severity) / DONE_MARKER).is_file()

    def cached_coco(self) -> CocoData:
        """The split with ``file_name`` pointing at the cached PNGs (same ids and annotations)."""
        images = [{**im, "file_name": f"{int(im['id'])}.png"} for im in self.coco.images]
        return CocoData(images=images, annotations=self.coco.annotations, categories=self.coco.categories)

    def _render_one(self, out_dir: Path, corruption: str, severity: int, image: dict[str, Any]) -> None:
        from detkit.data.images import load_image

        src = load_image(image_file(self.images_dir, image["file_name"], self.source))
        out = corrupt(src, corruption, severity, image_seed(self.seed, corruption, severity, image["id"]))
        ok = cv2.imwrite(str(out_dir / f"{int(image['id'])}.png"), cv2.cvtColor(out, cv2.COLOR_RGB2BGR), PNG_PARAMS)
        if not ok:
            raise DetkitError(
                f"could not write a corrupted image under {out_dir}", hint="check free disk space and permissions"
            )

    def render(self, corruption: str, severity: int, workers: int = 1) -> None:
        """Render one (corruption, severity) folder unless it is complete already.

        A lock file beside the folder serialises concurrent runs on the same cache: the second one waits and
        then finds the folder complete.
        """
        folder = self.folder(corruption, severity)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _folder_lock(folder.parent / f".{folder.name}.lock"):
            if self.is_complete(corruption, severity):
                self.reused.append((corruption, severity))
                return
            for stale in folder.parent.glob(f".{folder.name}.*.tmp"):  # left by a killed run (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
            progress = ProgressTask(f"render {corruption} s{severity}", total=len(self.coco.images))
            try:
                with atomic_dir(folder, overwrite=True) as tmp:
                    pool = ThreadPoolExecutor(max_workers=max(1, workers))
                    try:
                        futures = [
                            pool.submit(self._render_one, tmp, corruption, severity, im) for im in self.coco.images
                        ]
                        for fut in futures:
                            fut.result()
                            progress.advance()
                    finally:
                        pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C / errors, drop the queued images
                    marker = {
                        "corruption": corruption,
                        "severity": severity,
                        "seed": self.seed,
                        "version": CORRUPTIONS_VERSION,
                        "num_images": len(self.coco.images),
                    }
                    atomic_write_json(tmp / DONE_MARKER, marker)
            finally:
                progress.close()
        self.rendered.append((corruption, severity))
        self.images_rendered += len(self.coco.images)


@contextlib.contextmanager
def _folder_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX ``flock``; a no-op where it does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_cache(
    coco: CocoData, images_dir: Path, source: str | Path, seed: int, cache_dir: str | Path | None
) -> CorruptionCache:
    """The cache folder of this split and seed (created, with ``cache_info.json``)."""
    fingerprint = split_fingerprint(coco, images_dir, source)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key_dir = root / f"{fingerprint[:20]}-seed{seed}-v{CORRUPTIONS_VERSION}"
    try:
        key_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DetkitError(
            f"cannot create the COCO-C cache folder: {e.strerror}",
            hint="give cache_dir a writable folder",
            path=key_dir,
            params="cache_dir",
        ) from None
    info = key_dir / "cache_info.json"
    if not info.is_file():
        atomic_write_json(
            info,
            {
                "source_images": str(images_dir),
                "annotations": str(source),
                "fingerprint": fingerprint,
                "seed": seed,
                "corruptions_version": CORRUPTIONS_VERSION,
                "num_images": len(coco.images),
            },
        )
    return CorruptionCache(root=key_dir, coco=coco, images_dir=images_dir, source=source, seed=seed)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def evaluate_coco_c(
    detector: Any,
    coco: CocoData,
    images_dir: str | Path,
    class_map: ClassMap,
    clean_ap: float | None,
    corruptions: Sequence[str] = BENCHMARK,
    severities: Sequence[int] = SEVERITIES,
    source: str | Path = "annotations",
    cache_dir: str | Path | None = None,
    batch_size: int = 8,
    seed: int = 0,
    workers: int | None = None,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """Render (or reuse) every selected (corruption, severity) and score the detector on each (and, with
    ``calibration``, measure its calibration errors there: ``"calibration"[corruption][severity]``).

    ``clean_ap`` is the clean AP in percent (``None`` leaves rPC out). Returns the ``coco_c`` part of
    ``robustness.json``: AP and AP50 per corruption and severity, the mean per corruption and per severity,
    mPC, rPC, whether the selection is the full 15 x 5 benchmark, and what the cache rendered or reused.
    """
    images_dir = Path(images_dir)
    if not coco.images:
        raise DetkitError("the split has no images to corrupt", path=source)
    if not any(not a.get("iscrowd", 0) for a in coco.annotations):
        raise DetkitError(
            "the split has no ground-truth boxes, so COCO-C AP is undefined",
            hint="evaluate a split with annotations",
            path=source,
        )
    cache = open_cache(coco, images_dir, source, seed, cache_dir)
    cached_coco = cache.cached_coco()
    workers = default_workers() if workers is None else workers

    cells = [(c, s) for c in corruptions for s in severities]
    ap: dict[str, dict[int, float]] = {c: {} for c in corruptions}
    ap50: dict[str, dict[int, float]] = {c: {} for c in corruptions}
    cal: dict[str, dict[str, Any]] = {c: {} for c in corruptions}
    for corruption, severity in track(cells, "COCO-C"):
        cache.render(corruption, severity, workers=workers)
        folder = cache.folder(corruption, severity)
        scores = score_images(
            detector, cached_coco, folder, class_map, batch_size, source=folder, calibration=calibration
        )
        if calibration is not None:
            cal[corruption][str(severity)] = scores["calibration"]
        ap[corruption][severity] = scores["AP"]
        ap50[corruption][severity] = scores["AP50"]

    mpc = mean_performance_under_corruption(ap)
    extra = {"calibration": cal} if calibration is not None else {}
    return {
        **extra,
        "corruptions": list(corruptions),
        "severities": list(severities),
        "clean_AP": clean_ap,
        "AP": {c: {str(s): v for s, v in per.items()} for c, per in ap.items()},
        "AP50": {c: {str(s): v for s, v in per.items()} for c, per in ap50.items()},
        "mean_AP_per_corruption": {c: mean_ap(per.values()) for c, per in ap.items()},
        "mean_AP_per_severity": {str(s): mean_ap(ap[c][s] for c in corruptions) for s in severities},
        "mPC": mpc,
        "mPC_AP50": mean_performance_under_corruption(ap50),
        "rPC": relative_performance_under_corruption(mpc, clean_ap) if clean_ap is not None else None,
        "complete_benchmark": set(corruptions) == set(BENCHMARK) and set(severities) == set(SEVERITIES),
        "cache": {
            "dir": str(cache.root),
            "rendered": [[c, s] for c, s in cache.rendered],
            "reused": [[c, s] for c, s in cache.reused],
            "images_rendered": cache.images_rendered,
        },
    }
