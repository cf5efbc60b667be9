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
from detkit.evaluation.detections import DetectionTable
from detkit.inference.types import Detections

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
        except Exception as e:  # noqa: BLE001 - onnx raises several types for a broken file
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
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception hierarchy
        raise DetkitError(
            f"onnxruntime cannot load the model ({type(e).__name__}: {str(e).splitlines()[0]})",
            hint="re-export it with `detkit export onnx`",
            path=path,
        ) from e


class OnnxDetector:
    """Run an exported detkit model with onnxruntime (the ``onnxruntime`` backend of ``detkit.inference.Detector``).

    ``predict(images, conf)`` and ``predict_table(images, image_ids, conf)`` behave like ``TorchDetector``'s:
    images are paths or uint8 HWC RGB arrays; boxes come back as xyxy original pixels.
    ``calibrator`` is the embedded calibrator (or None).
    """

    backend = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        batch_size: int = 8,
        metadata: dict[str, Any] | None = None,
    ):
        self.path = self.source = Path(path)
        if not self.path.is_file():
            raise DetkitError("ONNX model not found", path=self.path)
        self.metadata = metadata if metadata is not None else read_model_metadata(self.path)
        self.class_map = ClassMap.from_dict(self.metadata["classes"])
        self.imgsz = (int(self.metadata["imgsz"][0]), int(self.metadata["imgsz"][1]))
        self.session = create_session(self.path, threads=threads, providers=providers)
        self.providers = self.session.get_providers()
        self.threads = threads
        self.batch_size = max(1, int(batch_size))
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != {"images", "orig_sizes"}:
            raise DetkitError(
                f"ONNX model inputs are {sorted(inputs)}, expected images and orig_sizes",
                hint="export it with `detkit export onnx`",
                path=self.path,
            )
        batch_dim = inputs["images"].shape[0]
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) else None
        self.calibrator = _embedded_calibrator(self.metadata.get("calibrator"), self.path)
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def device(self) -> str:
        return "cuda" if self.providers and self.providers[0] == "CUDAExecutionProvider" else "cpu"

    def run(self, images: np.ndarray, orig_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The graph on a prepared batch: uint8 [B,3,H,W], int64 [B,2] (w, h) → labels, boxes, scores, raw scores.

        Raw scores equal scores unless the graph embeds a calibrator.
        """
        images = np.ascontiguousarray(images, dtype=np.uint8)
        orig_sizes = np.ascontiguousarray(orig_sizes, dtype=np.int64)
        if self.fixed_batch is not None and len(images) != self.fixed_batch:
            parts = [
                self.run(images[i : i + self.fixed_batch], orig_sizes[i : i + self.fixed_batch])
                for i in range(0, len(images), self.fixed_batch)
            ]
            return tuple(np.concatenate(p) for p in zip(*parts))  # type: ignore[return-value]
        outs = self.session.run(None, {"images": images, "orig_sizes": orig_sizes})
        named = dict(zip(self.output_names, outs))
        scores = named["scores"].astype(np.float32)
        raw = named["raw_scores"].astype(np.float32) if "raw_scores" in named else scores
        return named["labels"].astype(np.int64), named["boxes"].astype(np.float32), scores, raw

    def infer(
        self, images: Sequence[Any], batch_size: int | None = None
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """All top-k detections per image as (labels, boxes xyxy px, scores, raw scores), nothing filtered."""
        from detkit.data.images import as_image, to_batch

        step = max(1, int(batch_size or self.batch_size))
        results = []
        for start in range(0, len(images), step):
            chunk = [as_image(im, start + i) for i, im in enumerate(images[start : start + step])]
            batch, sizes = to_batch(chunk, self.imgsz)
            results.extend(zip(*self.run(batch.numpy(), sizes.numpy())))
        return results

    def predict(self, images: Sequence[Any], conf: float = 0.0, batch_size: int | None = None) -> list:
        """Per image ``Detections`` (boxes xyxy px, scores, labels, category_ids) with score > ``conf``."""
        results = []
        for labels, boxes, scores, _ in self.infer(images, batch_size):
            keep = scores > conf
            lab = labels[keep]
            results.append(
                Detections(
                    boxes=boxes[keep],
                    scores=scores[keep],
                    labels=lab,
                    category_ids=self.class_map.labels_to_category_ids(lab),
                )
            )
        return results

    def predict_table(self, images: Sequence[Any], image_ids: Sequence[int], conf: float = 0.0) -> DetectionTable:
        dets = self.predict(images, conf=conf)
        return DetectionTable.concat(
            DetectionTable.from_xyxy(int(i), d.boxes, d.scores, d.category_ids) for i, d in zip(image_ids, dets)
        )

    def __repr__(self) -> str:
        return (
            f"OnnxDetector({self.path}, imgsz={self.imgsz}, classes={len(self.class_map)}, providers={self.providers})"
        )


def _embedded_calibrator(raw: dict[str, Any] | None, path: Path):
    if not raw:
        return None
    from detkit.calibration.io import calibrator_from_dict

    try:
        return calibrator_from_dict(raw)
    except Exception as e:  # noqa: BLE001 - the calibration reader raises its own corrupt-file type
        raise DetkitError(f"embedded calibrator is invalid: {e}", hint="re-export the model", path=path) from e


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
    if class_map is not None:
        det.class_map.check_same(
            class_map, f"the ONNX model {path}", class_map_label, hint="export a model trained on these classes"
        )
    if imgsz is not None:
        want = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(int(v) for v in imgsz)
        if tuple(want) != det.imgsz:
            raise DetkitError(
                f"the ONNX graph is fixed at {det.imgsz[0]}×{det.imgsz[1]}, not {want[0]}×{want[1]}",
                hint="re-export with --imgsz",
                path=path,
            )
    return det
