"""How hard are the synthetic COCO-O-style domains? A quick proxy on CPU (a few minutes on 2 busy cores).

A small CNN learns to name the shape inside each ground-truth box of the clean training split (crops resized to
32x32), then classifies the boxes of the clean test split and of the same test scenes in each of the six styles.
The accuracy drop per domain shows how much of the appearance a detector relies on each style takes away
(a proxy: detection AP also pays for localisation). Prints one line per domain.

Run: ``python benchmarks/synth_domain_shift.py [--train 600 --test 150 --imgsz 160 --epochs 12]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from detkit.data.styles import DOMAINS  # noqa: E402
from detkit.data.synth import generate_synthetic  # noqa: E402

CROP = 32


def crops(images_dir: Path, ann_file: Path) -> tuple[np.ndarray, np.ndarray]:
    coco = json.loads(ann_file.read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    cache: dict[int, np.ndarray] = {}
    xs, ys = [], []
    for a in coco["annotations"]:
        img = cache.get(a["image_id"])
        if img is None:
            img = cache[a["image_id"]] = cv2.cvtColor(
                cv2.imread(str(images_dir / files[a["image_id"]])), cv2.COLOR_BGR2RGB
            )
        x, y, w, h = a["bbox"]
        m = 0.1 * max(w, h)  # a little context around the box
        x0, y0 = int(max(0, x - m)), int(max(0, y - m))
        x1, y1 = int(min(img.shape[1], x + w + m)), int(min(img.shape[0], y + h + m))
        xs.append(cv2.resize(img[y0:y1, x0:x1], (CROP, CROP), interpolation=cv2.INTER_AREA))
        ys.append(a["category_id"] - 1)
    return np.stack(xs), np.asarray(ys)


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--test", type=int, default=150)
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    tmp = Path(tempfile.mkdtemp(prefix="detkit-shift-"))
    try:
        t0 = time.perf_counter()
        root = generate_synthetic(
            tmp / "ds", train=a.train, val=0, calib=0, test=a.test, imgsz=a.imgsz, domains=True, seed=a.seed
        )
        x_tr, y_tr = crops(root / "images/train", root / "annotations/train.json")
        sets = {"clean": crops(root / "images/test", root / "annotations/test.json")}
        for d in DOMAINS:
            sets[d] = crops(root / "coco_o" / d / "val2017", root / "coco_o" / d / "annotations/instances_val2017.json")
        t_data = time.perf_counter() - t0

        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(64 * (CROP // 8) ** 2, 5),
        )
        xt, yt = to_tensor(x_tr), torch.from_numpy(y_tr)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        steps = a.epochs * ((len(xt) + 127) // 128)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        t0 = time.perf_counter()
        for _ in range(a.epochs):
            model.train()
            perm = torch.randperm(len(xt))
            for i in range(0, len(xt), 128):
                idx = perm[i : i + 128]
                batch = xt[idx]
                flip = torch.rand(len(idx)) < 0.5  # the only augmentation: horizontal flips
                batch[flip] = batch[flip].flip(-1)
                loss = nn.functional.cross_entropy(model(batch), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        t_train = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            acc = {name: float((model(to_tensor(x)).argmax(1).numpy() == y).mean()) for name, (x, y) in sets.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"data {t_data:.1f} s, training {t_train:.1f} s on {len(x_tr)} train boxes; "
        f"test boxes per set: {len(sets['clean'][1])}"
    )
    print(f"{'set':10s} accuracy  relative drop")
    for name, v in acc.items():
        drop = (acc["clean"] - v) / acc["clean"] * 100
        print(f"{name:10s} {v:8.3f}  {drop:6.1f} %")


if __name__ == "__main__":
    main()
