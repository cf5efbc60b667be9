"""``OnnxDetector``: an exported ``model.onnx`` behind the same interface as the PyTorch ``TorchDetector``.

Images go through the very same pre-processing (``detkit.data.images``); the graph itself contains the
model, the post-processor and (when exported with one) the calibrator, so the outputs need no further work
beyond the confidence filter and the label → category id map.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.inference.exported import ExportedDetector

METADATA_KEY = "detkit"


def sidecar_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` → ``model.json`` (the metadata written next to every export)."""
    return Path(onnx_path).with_suffix(".json")


def read_model_metadata(onnx_path: str | Path) -> dict[str, Any]:
    """The export metadata: the ``model.json`` sidecar if present, else the copy embedded in the ONNX file."""
    import onnx

    from detkit.utils.files import read_json

    path = Path(onnx_path)
    side = sidecar_path(path)
    if side.is_file():
        meta = read_json(side)
    else:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:
            raise DetkitError(
                f"not a readable ONNX model ({type(e).__name__}: {e})",
                hint="re-export it with `detkit export onnx`",
                path=path,
            ) from e
        props = {p.key: p.value for p in model.metadata_props}
        if METADATA_KEY not in props:
            raise DetkitError(
                "ONNX model has no detkit metadata and no model.json sidecar beside it",
                hint="export models with `detkit export onnx` (it writes model.json and embeds the same metadata)",
                path=path,
            )
        meta = json.loads(props[METADATA_KEY])
    if not isinstance(meta, dict) or "classes" not in meta or "imgsz" not in meta:
        raise DetkitError(
            "export metadata lacks 'classes' or 'imgsz'",
            hint="re-export the model with `detkit export onnx`",
            path=side if side.is_file() else path,
        )
    return meta


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def create_session(path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None):
    """An onnxruntime session with full graph optimisation; ``threads`` sets intra-op parallelism."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers or default_providers()))
    except Exception as e:
        raise DetkitError(
            f"onnxruntime cannot load the model ({type(e).__name__}: {str(e).splitlines()[0]})",
            hint="re-export it with `detkit export onnx`",
            path=path,
        ) from e


class OnnxDetector(ExportedDetector):
    """Run an exported detkit model with onnxruntime (the ``onnxruntime`` backend of ``detkit.inference.Detector``).

    ``predict(images, conf)`` and ``predict_table(images, image_ids, conf)`` behave like ``TorchDetector``'s:
    images are paths or uint8 HWC RGB arrays; boxes come back as xyxy original pixels.
    ``calibrator`` is the embedded calibrator (or None). Everything but opening and running the session is
    shared with the other runtimes (:class:`detkit.inference.exported.ExportedDetector`).
    """

    backend = "onnxruntime"
    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        batch_size: int = 8,
        metadata: dict[str, Any] | None = None,
    ):
        self._providers = providers
        super().__init__(path, threads=threads, batch_size=batch_size, metadata=metadata)

    def _open(self) -> tuple[dict[str, int | None], list[str]]:
        self.session = create_session(self.path, threads=self.threads, providers=self._providers)
        self.providers = self.session.get_providers()
        dims = {i.name: i.shape[0] for i in self.session.get_inputs()}
        return (
            {k: d if isinstance(d, int) else None for k, d in dims.items()},
            [o.name for o in self.session.get_outputs()],
        )

    def _forward(self, images: np.ndarray, orig_sizes: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {"images": images, "orig_sizes": orig_sizes})

    @property
    def device(self) -> str:
        return "cuda" if self.providers and self.providers[0] == "CUDAExecutionProvider" else "cpu"

    def __repr__(self) -> str:
        return (
            f"OnnxDetector({self.path}, imgsz={self.imgsz}, classes={len(self.class_map)}, providers={self.providers})"
        )


def open_onnx(
    path: str | Path,
    device: Any = None,
    class_map: ClassMap | None = None,
    imgsz: Any = None,
    threads: int | None = None,
    batch_size: int = 8,
    class_map_label: str = "the requested class map",
) -> OnnxDetector:
    """``open_detector``'s branch for ``.onnx`` files: the graph fixes weights, classes and input size."""
    if device is not None and str(device) not in ("auto", "cpu") and not str(device).startswith("cuda"):
        raise DetkitError(f"unknown device '{device}' for onnxruntime", hint="use cpu, cuda or auto")
    providers = ["CPUExecutionProvider"] if str(device) == "cpu" else None
    det = OnnxDetector(path, threads=threads, providers=providers, batch_size=batch_size)
    det.check_request(class_map, imgsz, class_map_label)
    return det
