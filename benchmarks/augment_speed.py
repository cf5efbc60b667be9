"""Per-sample cost of the training augmentation pipeline (the official RT-DETR ops) at a few input sizes, and of
DEIM's mosaic (four images per sample) in memory and through the train loader (JPEG decoding included).

Run: ``python benchmarks/augment_speed.py [--samples 200]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


from detkit.data.augment import EpochAugmentation, build_transform  # noqa: E402
from detkit.data.augment_config import AugmentConfig, augment_config_from_dict  # noqa: E402
from detkit.data.synth import render_scene, scene_rng  # noqa: E402


def _row(kind: str, seconds: float, samples: int) -> None:
    ms = seconds / samples * 1000
    print(f"{kind:<44} {ms:6.2f} ms per sample ({1000 / ms:6.0f} samples/s, one process)")


def _pipelines(samples: int) -> None:
    for src, dst in ((256, 256), (640, 640), (1024, 640)):
        scenes = [render_scene(scene_rng(0, "train", i), src) for i in range(16)]
        for train in (True, False):
            transform = build_transform(AugmentConfig(), imgsz=dst, train=train)
            for i in range(3):  # warm-up
                transform(scenes[i].image, scenes[i].boxes, scenes[i].labels)
            t0 = time.perf_counter()
            for i in range(samples):
                s = scenes[i % len(scenes)]
                transform.set_random_seed(i)
                transform(s.image, s.boxes, s.labels)
            kind = "train pipeline" if train else "eval resize"
            _row(f"{kind} {src}px -> {dst}px", time.perf_counter() - t0, samples)
        if src != 256:
            continue
        for p in (0.5, 1.0):  # the same images, in memory: the cost of pasting and warping
            aug = EpochAugmentation(augment_config_from_dict({"mosaic": {"p": p}}), imgsz=dst)

            def load(i: int, scenes=scenes):
                s = scenes[i]
                return s.image, s.boxes, s.labels

            t0 = time.perf_counter()
            for i in range(samples):
                aug(i % len(scenes), len(scenes), i, load)
            _row(f"train pipeline + mosaic p={p:g} {src}px -> {dst}px", time.perf_counter() - t0, samples)


def _loader(samples: int) -> None:
    """DetectionDataset samples (image read + decode + augmentation) at 256 px, with and without mosaic."""
    from detkit.data import load_dataset
    from detkit.data.loader import DetectionDataset
    from detkit.data.synth import generate_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(generate_synthetic(Path(tmp) / "shapes", train=64, val=1, calib=0, test=0, imgsz=256, seed=0))
        for name, section in (
            ("loader 256px, no mosaic", None),
            ("loader 256px, mosaic p=0.5", {"mosaic": {"p": 0.5}}),
            ("loader 256px, mosaic p=1", {"mosaic": {"p": 1.0}}),
        ):
            data = DetectionDataset(ds.split("train"), ds.class_map, 256, section, train=True, total_epochs=10)
            for i in range(3):  # warm-up
                data[i]
            t0 = time.perf_counter()
            for i in range(samples):
                if i % len(data) == 0:
                    data.set_epoch(i // len(data))
                data[i % len(data)]
            _row(name, time.perf_counter() - t0, samples)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", type=int, default=200)
    a = p.parse_args()
    _pipelines(a.samples)
    _loader(a.samples)


if __name__ == "__main__":
    main()
