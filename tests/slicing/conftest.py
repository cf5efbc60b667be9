"""A tiny RT-DETR checkpoint for the CLI tests of sliced predict and eval."""

from __future__ import annotations

import pytest
from export.tiny import tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    from detkit.data.synth import synth_class_map

    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", synth_class_map(), imgsz=64)
