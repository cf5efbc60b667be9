"""Sanity and cost of the explanation methods (``detkit explain``).

Sanity, on synthetic images holding one object each (the project's generator), for each image's top detection:
the map's mass inside the box relative to the box's share of the image, and the score drop when the map's peak
region vs a random region of the same size is masked. Cost: seconds per image of each method and of a plain
predict of the same images, at the model's size or at ``--imgsz``.

Run: ``python benchmarks/explain_maps.py MODEL [--images 24] [--size 256] [--imgsz 640] [--masks 256]``
(drise costs one inference per mask: time it with fewer masks and scale linearly.)
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from detkit.api import load_model  # noqa: E402
from detkit.data.synth import render_scene, scene_rng  # noqa: E402
from detkit.explain import METHODS, explain_image  # noqa: E402
from detkit.explain.stats import sanity_check  # noqa: E402


def single_object_images(n: int, size: int, min_side: float, seed: int = 5) -> list:
    images, i = [], 0
    while len(images) < n:
        s = render_scene(scene_rng(seed, "sanity", i), size, 1, 1, empty_fraction=0.0)
        i += 1
        if len(s.boxes) == 1 and (s.boxes[0, 2:] - s.boxes[0, :2]).min() >= min_side * size:
            images.append(s.image)
    return images


def seconds_per_image(fn, images, repeat: int = 1) -> float:
    fn(images[0])  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        for im in images:
            fn(im)
    return (time.perf_counter() - t0) / (repeat * len(images))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--size", type=int, default=None, help="side of the synthetic images (default: the model's)")
    p.add_argument("--min-side", type=float, default=0.15, help="smallest object side as a fraction of the image")
    p.add_argument("--conf", type=float, default=0.0)
    p.add_argument("--masks", type=int, default=256)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--imgsz", type=int, default=None, help="also time every method with the model run at this size")
    p.add_argument("--timing-images", type=int, default=4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-sanity", action="store_true", help="only the timings")
    a = p.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    det = load_model(a.model, device="cpu")
    size = a.size or det.imgsz[0]
    images = single_object_images(a.images, size, a.min_side)
    methods = a.methods.split(",")
    out = {"model": a.model, "imgsz": list(det.imgsz), "image_size": size, "sanity": {}, "seconds_per_image": {}}
    for m in [] if a.skip_sanity else methods:
        out["sanity"][m] = sanity_check(det, images, m, conf=a.conf, masks=a.masks)
        print(json.dumps(out["sanity"][m]), flush=True)
    timing = [(det, images)]
    if a.imgsz:
        big = load_model(a.model, device="cpu", imgsz=a.imgsz)
        timing.append((big, single_object_images(a.timing_images, a.imgsz, a.min_side)))
    for d, ims in timing:
        ims = ims[: a.timing_images]
        key = f"{d.imgsz[0]}x{d.imgsz[1]}"
        row = {"predict": seconds_per_image(lambda im, d=d: d.predict([im]), ims)}
        for m in methods:
            row[m] = seconds_per_image(
                lambda im, d=d, m=m: explain_image(d, im, m, top=5, conf=0.0, masks=a.masks), ims
            )
        out["seconds_per_image"][key] = row
        print(key, json.dumps(row), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
