"""Conversion and validation throughput on a generated YOLO dataset (default 20k images / 100k boxes).

    python benchmarks/data_convert.py [--images 20000] [--boxes 5] [--dir /tmp/detkit_bench_convert] [--keep]

Writes a YOLO dataset of tiny JPEGs (a few sizes, so image headers matter) under --dir, then times
YOLO -> COCO (copying and hard-linking images), validation of the result (full decode and headers only) and
COCO -> YOLO. Prints wall and CPU seconds (CPU time is less sensitive to other processes on a shared machine),
images/s and boxes/s. Nothing is asserted: speed goals are read, not tested.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from detkit.data.convert import convert_dataset
from detkit.data.validate import validate_dataset

SIZES = ((64, 48), (48, 64), (80, 60), (32, 32))  # (w, h)


def make_yolo(root: Path, n_images: int, boxes_per_image: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    encoded = []
    for w, h in SIZES:
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        encoded.append(cv2.imencode(".jpg", img)[1].tobytes())
    n_val = n_images // 10
    total = 0
    for split, count in (("train", n_images - n_val), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            (root / "images" / split / f"{i:06d}.jpg").write_bytes(encoded[i % len(encoded)])
            k = boxes_per_image
            wh = rng.uniform(0.05, 0.5, (k, 2))
            cxcy = rng.uniform(wh / 2, 1 - wh / 2)
            cls = rng.integers(0, 10, k)
            rows = np.column_stack([cls, cxcy, wh])
            (root / "labels" / split / f"{i:06d}.txt").write_text(
                "".join(f"{int(r[0])} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f}\n" for r in rows)
            )
            total += k
    (root / "data.yaml").write_text(
        "train: images/train\nval: images/val\nnames: [" + ", ".join(f"c{i}" for i in range(10)) + "]\n"
    )
    return total


def timed(label: str, n_images: int, n_boxes: int, fn) -> float:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"{label:<38} {dt:8.2f} s wall {cpu:8.2f} s cpu  {n_images / dt:8.0f} images/s  {n_boxes / dt:8.0f} boxes/s",
        flush=True,
    )
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--boxes", type=int, default=5, help="boxes per image")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/detkit_bench_convert"))
    ap.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = ap.parse_args()
    base = args.dir
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        n_boxes = make_yolo(base / "yolo", args.images, args.boxes)
        load = os.getloadavg()[0]
        print(
            f"generated {args.images} images / {n_boxes} boxes in {time.perf_counter() - t0:.1f} s under {base} "
            f"(cpus: {os.cpu_count()}, load average {load:.1f}: other processes slow the wall times)"
        )
        n = args.images
        timed(
            "convert yolo -> coco (copy images)",
            n,
            n_boxes,
            lambda: convert_dataset(base / "yolo", base / "coco", to="coco"),
        )
        timed(
            "convert yolo -> coco (--link)",
            n,
            n_boxes,
            lambda: convert_dataset(base / "yolo", base / "coco_link", to="coco", link=True),
        )
        timed("validate (full decode)", n, n_boxes, lambda: validate_dataset(base / "coco"))
        timed("validate --fast (headers only)", n, n_boxes, lambda: validate_dataset(base / "coco", decode=False))
        timed(
            "convert coco -> yolo (copy images)",
            n,
            n_boxes,
            lambda: convert_dataset(base / "coco", base / "yolo_back", to="yolo"),
        )
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
