"""Throughput of the synthetic dataset generator (``detkit data synth``), clean splits and COCO-O-style domains.

Run: ``python benchmarks/synth_speed.py [--train 1500 --val 200 --calib 200 --test 200 --imgsz 256]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from detkit.data.styles import DOMAINS  # noqa: E402
from detkit.data.synth import generate_synthetic  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", type=int, default=1500)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--calib", type=int, default=200)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--imgsz", type=int, default=256)
    p.add_argument("--workers", type=int, default=0, help="0: one process per core (as the CLI)")
    a = p.parse_args()
    n_clean = a.train + a.val + a.calib + a.test
    tmp = Path(tempfile.mkdtemp(prefix="detkit-synth-bench-"))
    try:
        t0 = time.perf_counter()
        generate_synthetic(tmp / "clean", a.train, a.val, a.calib, a.test, imgsz=a.imgsz, workers=a.workers)
        t_clean = time.perf_counter() - t0
        t0 = time.perf_counter()
        generate_synthetic(tmp / "domains", 0, 0, 0, a.test, imgsz=a.imgsz, domains=True, workers=a.workers)
        t_dom = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_test = t_dom / a.test
    print(
        f"workers={a.workers or 'auto'}; clean splits: {n_clean} images at {a.imgsz}px in {t_clean:.1f} s "
        f"({n_clean / t_clean:.0f} img/s)"
    )
    print(
        f"test + {len(DOMAINS)} domains: {a.test} scenes x 7 images in {t_dom:.1f} s "
        f"({per_test * 1000:.1f} ms per scene)"
    )
    print(f"full default dataset with --domains: about {t_clean + t_dom - a.test * t_clean / n_clean:.1f} s")


if __name__ == "__main__":
    main()
