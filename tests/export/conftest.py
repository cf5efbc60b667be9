"""Session-wide tiny checkpoint, calibrator and exports shared by the export tests (exports are the slow part)."""

from __future__ import annotations

import pytest
from export.tiny import tiny_calibrator, tiny_checkpoint


@pytest.fixture(scope="session")
def class_map():
    from detkit.data.synth import synth_class_map

    return synth_class_map()  # the classes of the session's synthetic dataset, so evaluation can use it


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, class_map):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", class_map, imgsz=96)


@pytest.fixture(scope="session")
def calibrator_file(tmp_path_factory, class_map):
    from detkit.calibration.io import save_calibrator

    return save_calibrator(tiny_calibrator(class_map), tmp_path_factory.mktemp("cal") / "calibrator.json")


@pytest.fixture(scope="session")
def export_640(tmp_path_factory, ckpt, calibrator_file):
    """640×640, calibrator embedded, decoder truncated to 1 of 2 layers."""
    from detkit.export import export_onnx

    return export_onnx(
        ckpt,
        tmp_path_factory.mktemp("e640") / "model.onnx",
        calibrator=calibrator_file,
        imgsz=(640, 640),
        decoder_layers=1,
    )


@pytest.fixture(scope="session")
def export_480x640(tmp_path_factory, ckpt):
    """Non-square 480×640, no calibrator, all decoder layers."""
    from detkit.export import export_onnx

    return export_onnx(ckpt, tmp_path_factory.mktemp("e480") / "model.onnx", imgsz=(480, 640))


@pytest.fixture(scope="session")
def export_small(tmp_path_factory, ckpt):
    """At the checkpoint's own size (96), dynamic batch, no calibrator: for runtime, eval and predict tests."""
    from detkit.export import export_onnx

    return export_onnx(ckpt, tmp_path_factory.mktemp("e96") / "model.onnx")
