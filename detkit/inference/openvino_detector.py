"""``OpenVinoDetector``: an exported ``model.onnx`` (fp32 or INT8) run by OpenVINO (the optional ``openvino`` extra).

OpenVINO reads the ONNX file directly (no conversion step, nothing written). Everything but opening and running
the graph is shared with onnxruntime's :class:`~detkit.inference.onnx_detector.OnnxDetector`
(:class:`~detkit.inference.exported.ExportedDetector`): the same pre-processing, metadata and calibrated outputs.

OpenVINO's CPU plugin computes float layers in bfloat16 by default on CPUs with bf16 units; detkit asks for f32
(``INFERENCE_PRECISION_HINT``) so that the file's measured accuracy (its ``model.json``) holds for this runtime
too. The quantized layers of an INT8 file still run as int8. See docs/deploy.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.inference.exported import ExportedDetector

MISSING = "openvino is not installed (pip install 'detkit[openvino]')"
DEVICES = ("CPU",)


def import_openvino():
    """The ``openvino`` module, or one DetkitError line saying how to install the extra."""
    try:
        import openvino
    except ImportError:
        raise DetkitError(MISSING) from None
    return openvino


class OpenVinoDetector(ExportedDetector):
    """Run an exported detkit model with OpenVINO (the ``openvino`` backend of ``detkit.inference.Detector``).

    ``threads`` sets OpenVINO's inference threads (default: its own choice); ``device`` is an OpenVINO device name
    (``CPU``). ``predict``, ``predict_table``, ``infer`` and ``run`` behave exactly like ``OnnxDetector``'s.
    """

    backend = "openvino"
    runtime = "OpenVINO"

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        batch_size: int = 8,
        device: str = "CPU",
        metadata: dict[str, Any] | None = None,
    ):
        if str(device).upper() not in DEVICES:
            raise DetkitError(f"unknown OpenVINO device '{device}'", hint=f"use {', '.join(DEVICES)}")
        self.ov_device = str(device).upper()
        self.device = "cpu"
        super().__init__(path, threads=threads, batch_size=batch_size, metadata=metadata)

    def _open(self) -> tuple[dict[str, int | None], list[str]]:
        ov = import_openvino()
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as e:
            raise DetkitError(
                f"OpenVINO cannot read the model ({type(e).__name__}: {_first_line(e)})",
                hint="re-export it with `detkit export onnx`",
                path=self.path,
            ) from e
        dims = {}
        for port in model.inputs:
            first = port.get_partial_shape()[0]
            dims[port.get_any_name()] = None if first.is_dynamic else int(first.get_length())
        names = [port.get_any_name() for port in model.outputs]  # the compiled model may rename its ports
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        try:
            self.compiled = core.compile_model(model, self.ov_device, config)
        except Exception as e:
            raise DetkitError(
                f"OpenVINO cannot compile the model for {self.ov_device} ({type(e).__name__}: {_first_line(e)})",
                hint="use the onnxruntime backend for this file",
                path=self.path,
            ) from e
        self.request = self.compiled.create_infer_request()
        return dims, names

    def _forward(self, images: np.ndarray, orig_sizes: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({"images": images, "orig_sizes": orig_sizes})  # outputs are copies by default
        return list(result.to_tuple())

    def __repr__(self) -> str:
        return f"OpenVinoDetector({self.path}, imgsz={self.imgsz}, classes={len(self.class_map)}, {self.ov_device})"


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def open_openvino(
    path: str | Path,
    device: Any = None,
    class_map: ClassMap | None = None,
    imgsz: Any = None,
    threads: int | None = None,
    batch_size: int = 8,
    class_map_label: str = "the requested class map",
) -> OpenVinoDetector:
    """``open_detector``'s branch for ``.onnx`` files with ``backend="openvino"``."""
    if device is not None and str(device) not in ("auto", "cpu", "CPU"):
        raise DetkitError(f"unknown device '{device}' for openvino", hint="use cpu or auto")
    det = OpenVinoDetector(path, threads=threads, batch_size=batch_size)
    det.check_request(class_map, imgsz, class_map_label)
    return det
