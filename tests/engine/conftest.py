"""Tiny datasets and a tiny RT-DETR-R18 recipe so the engine tests stay fast on a CPU."""

from __future__ import annotations

import pytest

TINY = [
    "model.depth=18",
    "model.freeze_stem=false",
    "model.frozen_bn=false",
    "model.encoder_dim=32",
    "model.encoder_ffn_dim=64",
    "model.hidden_dim=32",
    "model.num_heads=4",
    "model.num_queries=10",
    "model.decoder_layers=1",
    "model.decoder_ffn_dim=64",
    "model.num_denoising=10",
    "train.warmup_iters=2",
    "train.ema_warmups=4",
    "train.multiscale=[0.5,1.0]",
    "train.val_batch=4",
    "train.lr=5e-4",
    "train.workers=0",
    "train.imgsz=64",
    "train.batch=2",
]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """4 train / 2 val synthetic images at 64 px (5 classes, ids 1..5)."""
    from detkit.data.synth import generate_synthetic

    return generate_synthetic(
        tmp_path_factory.mktemp("engine") / "shapes", train=4, val=2, calib=0, test=0, imgsz=64, seed=3
    )


@pytest.fixture
def tiny_overrides():
    return list(TINY)


@pytest.fixture(scope="session")
def tiny_overrides_for_fixtures():
    """The same overrides for fixtures wider than one test (a tuple: nothing can change it)."""
    return tuple(TINY)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny models gain nothing from more, and a shared CPU makes extra threads spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
