"""A tiny random RT-DETR checkpoint (and its ONNX export) and single-object synthetic images for explain tests."""

from __future__ import annotations

import pytest
from explain.scenes import single_object_scene
from export.tiny import tiny_checkpoint


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny models gain nothing from more, and a shared CPU makes extra threads spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def class_map():
    from detkit.data.synth import synth_class_map

    return synth_class_map()


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, class_map):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", class_map, imgsz=64)


@pytest.fixture(scope="session")
def detector(ckpt):
    from detkit.api import load_model

    return load_model(ckpt, device="cpu")


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory, ckpt):
    from detkit.export import export_onnx

    return export_onnx(ckpt, tmp_path_factory.mktemp("onnx") / "model.onnx", verify=False).model_path


@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    import cv2

    root = tmp_path_factory.mktemp("images")
    for i in range(2):
        cv2.imwrite(str(root / f"scene{i}.png"), cv2.cvtColor(single_object_scene(i).image, cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture
def scene():
    s = single_object_scene(0)
    assert len(s.boxes) == 1
    return s
