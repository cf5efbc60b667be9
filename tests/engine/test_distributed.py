"""Two CPU processes (gloo) under torchrun, where every step one rank sees only a background image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import torch

from detkit.data.coco import read_coco, write_coco
from detkit.data.dataset import load_dataset


def _one_object_one_background(src, dst):
    """A copy of ``src`` whose train split is two images: one with objects, one without any."""
    shutil.copytree(src, dst)
    spec = load_dataset(dst)
    path = spec.split("train").annotations
    coco = read_coco(path)
    keep = coco.images[:2]
    with_objects = int(keep[0]["id"])
    coco.images = keep
    coco.annotations = [a for a in coco.annotations if int(a["image_id"]) == with_objects]
    assert coco.annotations
    write_coco(path, coco)
    return dst


def test_two_process_gloo_run_with_a_background_only_rank(tiny_dataset, tiny_overrides, tmp_path):
    data = _one_object_one_background(tiny_dataset, tmp_path / "data")
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "detkit", "train",
           "recipe:rtdetr-r18", "--data", str(data), "--epochs", "1", "--batch", "2", "--out", str(out), "--name", "ddp", "--json",
           *tiny_overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DETKIT_DEBUG": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)  # a hang fails here
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])  # only rank 0 prints the JSON object
    assert result["epochs_done"] == 1 and result["run_dir"] == str(out / "ddp")
    ckpt = torch.load(out / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 1 and ckpt["rng"]["torch"].shape[0] == 2  # one RNG state per process
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.dtype.is_floating_point)
