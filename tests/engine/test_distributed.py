"""Two CPU processes (gloo) under torchrun: a rank that sees only a background image, and exact resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import torch
from detkit_testing import assert_same_state

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


def _torchrun_train(*args: str) -> dict:
    """``detkit train ARGS --json`` in two gloo processes; returns rank 0's result object."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "detkit",
        "train",
        *args,
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DETKIT_DEBUG": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)  # a hang fails here
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # only rank 0 prints the JSON object


def test_two_process_gloo_run_with_a_background_only_rank(tiny_dataset, tiny_overrides, tmp_path):
    data = _one_object_one_background(tiny_dataset, tmp_path / "data")
    out = tmp_path / "runs"
    result = _torchrun_train(
        "recipe:rtdetr-r18",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--batch",
        "2",
        "--out",
        str(out),
        "--name",
        "ddp",
        *tiny_overrides,
    )
    assert result["epochs_done"] == 1 and result["run_dir"] == str(out / "ddp")
    ckpt = torch.load(out / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 1 and ckpt["rng"]["torch"].shape[0] == 2  # one RNG state per process
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.dtype.is_floating_point)


def test_two_process_resume_equals_the_uninterrupted_run(tiny_dataset, tiny_overrides, tmp_path):
    """Two epochs in one go against one epoch, then ``--resume`` for the second: the same weights, EMA and
    optimizer state to the bit (every process restores its own RNG state and data shard)."""
    out = tmp_path / "runs"
    # one image per process: keep the full 64 px (at 32 px the stride-32 map is 1x1, too small for a training BN)
    common = ["--data", str(tiny_dataset), "--batch", "2", "--out", str(out), *tiny_overrides, "train.multiscale=[1.0]"]
    _torchrun_train("recipe:rtdetr-r18", "--epochs", "2", "--name", "full", *common)
    _torchrun_train("recipe:rtdetr-r18", "--epochs", "1", "--name", "part", *common)
    resumed = _torchrun_train("--resume", str(out / "part"), "--epochs", "2", "--data", str(tiny_dataset))
    assert resumed["epochs_done"] == 2
    full = torch.load(out / "full" / "checkpoints" / "last.pt", weights_only=True)
    part = torch.load(out / "part" / "checkpoints" / "last.pt", weights_only=True)
    assert full["step"] == part["step"] == 4  # 4 images, 2 per step
    for key in ("model", "ema", "optimizer", "epoch", "step"):
        assert_same_state(full[key], part[key], key)
