"""Render time of each COCO-C corruption on a 640 x 480 RGB image (mean over severities 1-5), single thread.

    python benchmarks/corruption_speed.py [--repeats 3] [--height 480] [--width 640]

Prints milliseconds per image for each corruption and severity, the per-corruption mean, and what a full
15 x 5 render of a 5,000-image split would cost on one core (PNG writing included as a separate column).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from detkit.evaluation.robustness.corruptions import BENCHMARK, SEVERITIES, corrupt


def test_image(h: int, w: int) -> np.ndarray:
    """A textured scene: gradients, shapes and noise texture, like a real photo has edges and flat parts."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w * 200 + 30, yy / h * 150 + 50, 120 + 40 * np.sin(xx / 23.0)], -1)
    img += cv2.GaussianBlur(rng.normal(0, 25, (h, w, 3)), (0, 0), 2)
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    for _ in range(12):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(10, 80))
        cv2.circle(img, (x, y), r, c, -1)
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    img = test_image(args.height, args.width)
    for name in BENCHMARK:  # warm-up (imports, OpenCV kernels)
        corrupt(img, name, 3, seed=0)

    print(
        f"COCO-C render time per image at {args.width}x{args.height}, 1 OpenCV thread, mean of {args.repeats} runs (ms)"
    )
    header = f"{'corruption':18s}" + "".join(f"{'s' + str(s):>8s}" for s in SEVERITIES) + f"{'mean':>8s}{'png':>8s}"
    print(header)
    print("-" * len(header))
    total = 0.0
    png_total = 0.0
    png_bytes = 0
    for name in BENCHMARK:
        times = []
        for s in SEVERITIES:
            t0 = time.perf_counter()
            for r in range(args.repeats):
                out = corrupt(img, name, s, seed=r)
            times.append((time.perf_counter() - t0) / args.repeats * 1000)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            _, buf = cv2.imencode(".png", out, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        png_bytes += len(buf) * len(SEVERITIES)
        png = (time.perf_counter() - t0) / args.repeats * 1000
        mean = float(np.mean(times))
        total += mean * len(SEVERITIES)
        png_total += png * len(SEVERITIES)
        print(f"{name:18s}" + "".join(f"{t:8.1f}" for t in times) + f"{mean:8.1f}{png:8.1f}")
    per_image = total + png_total
    print("-" * len(header))
    print(
        f"all 75 (corruption, severity) renders of one image: {total / 1000:.2f} s corrupting + "
        f"{png_total / 1000:.2f} s PNG writing"
    )
    print(f"cache size of one image's 75 renders (PNG, severity-5 outputs as proxy): {png_bytes / 1e6:.1f} MB")
    print(
        f"a 5,000-image split (COCO val2017 size) once into the cache, one core: "
        f"{per_image * 5000 / 1000 / 3600:.1f} h, "
        f"{png_bytes * 5000 / 1e9:.0f} GB"
    )


if __name__ == "__main__":
    main()
