"""Per-sample cost of the training augmentation pipeline (the official RT-DETR ops) at a few input sizes.

Run: ``python benchmarks/augment_speed.py [--samples 200]``
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


from detkit.data.augment import build_transform  # noqa: E402
from detkit.data.augment_config import AugmentConfig  # noqa: E402
from detkit.data.synth import render_scene, scene_rng  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", type=int, default=200)
    a = p.parse_args()
    for src, dst in ((256, 256), (640, 640), (1024, 640)):
        scenes = [render_scene(scene_rng(0, "train", i), src) for i in range(16)]
        for train in (True, False):
            transform = build_transform(AugmentConfig(), imgsz=dst, train=train)
            for i in range(3):  # warm-up
                transform(scenes[i].image, scenes[i].boxes, scenes[i].labels)
            t0 = time.perf_counter()
            for i in range(a.samples):
                s = scenes[i % len(scenes)]
                transform.set_random_seed(i)
                transform(s.image, s.boxes, s.labels)
            ms = (time.perf_counter() - t0) / a.samples * 1000
            kind = "train pipeline" if train else "eval resize   "
            print(f"{kind} {src}px -> {dst}px: {ms:6.2f} ms per sample ({1000 / ms:6.0f} samples/s, one process)")


if __name__ == "__main__":
    main()
