"""A tiny checkpoint and a folder of good and broken media for the predict and bench tests."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from export.tiny import tiny_calibrator, tiny_checkpoint


@pytest.fixture(scope="session")
def class_map():
    from detkit.data.synth import synth_class_map

    return synth_class_map()


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, class_map):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", class_map, imgsz=64)


@pytest.fixture(scope="session")
def calibrator_file(tmp_path_factory, class_map):
    from detkit.calibration.io import save_calibrator

    return save_calibrator(tiny_calibrator(class_map), tmp_path_factory.mktemp("cal") / "calibrator.json")


def write_video(path, frames: int = 3, hw=(48, 64)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (hw[1], hw[0]))
    rng = np.random.default_rng(1)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (*hw, 3), dtype=np.uint8))
    writer.release()


@pytest.fixture
def media(tmp_path):
    """Two good images (one in a sub-folder), a clip of 3 frames, and a corrupt image, video and text file."""
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(root / "a.jpg"), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "sub" / "b.png"), rng.integers(0, 256, (90, 50, 3), dtype=np.uint8))
    write_video(root / "clip.mp4")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (root / "notes.txt").write_text("not media")
    return root
