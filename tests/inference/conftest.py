"""Fixtures of the inference-layer tests: tiny models and foreign-layout weight files written by our own code."""

from __future__ import annotations

import pytest
import torch
from inference.tiny_models import IMGSZ, build_tiny, tiny_config


@pytest.fixture(scope="session")
def r18_5cls():
    """(config, model): tiny R18-like RT-DETR with 5 classes (the synthetic dataset's count)."""
    cfg = tiny_config(18)
    return cfg, build_tiny(cfg, 5)


@pytest.fixture(scope="session")
def official_files(tmp_path_factory, r18_5cls):
    """The 5-class tiny model as a bare official v2 ``.pth`` (anchors for 160 px) and the same keys as
    ``.safetensors``: the files a user downloads, with no recipe and no class map."""
    from detkit.models.checkpoint import save_weights
    from detkit.models.rtdetr.convert_weights import to_official

    _, model = r18_5cls
    root = tmp_path_factory.mktemp("foreign")
    official = to_official(model.state_dict(), "v2", imgsz=(IMGSZ, IMGSZ))
    pth = root / "rtdetrv2_r18vd.pth"
    torch.save({"ema": {"module": official}}, pth)
    sf = save_weights(root / "model.safetensors", official)
    return {"pth": pth, "safetensors": sf}
