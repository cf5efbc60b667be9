"""``ExportedDetector``: what every runtime of an exported detkit graph shares (onnxruntime, OpenVINO).

The graph takes a uint8 batch ``images`` [B,3,H,W] and ``orig_sizes`` [B,2] (w, h) and returns ``labels``, ``boxes``
(xyxy pixels of the original image), ``scores`` and, when it embeds a calibrator, ``raw_scores``. The pre-processing
is the model's own (``detkit.data.images``); classes, input size and the calibrator come from the export
metadata (``model.json`` beside the file, else the copy embedded in it). A runtime subclass only opens the file
(``_open``) and runs one batch (``_forward``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.evaluation.detections import DetectionTable
from detkit.inference.types import Detections

INPUT_NAMES = ("images", "orig_sizes")


class ExportedDetector:
    """An exported detkit graph behind the ``detkit.inference.Detector`` interface (subclasses pick the runtime).

    ``predict(images, conf)`` and ``predict_table(images, image_ids, conf)`` behave like ``TorchDetector``'s:
    images are paths or uint8 HWC RGB arrays; boxes come back as xyxy original pixels.
    ``calibrator`` is the embedded calibrator (or None).
    """

    backend = "exported"
    runtime = "the runtime"  # how messages name it

    def __init__(
        self, path: str | Path, threads: int | None = None, batch_size: int = 8, metadata: dict[str, Any] | None = None
    ):
        from detkit.inference.onnx_detector import read_model_metadata

        self.path = self.source = Path(path)
        if not self.path.is_file():
            raise DetkitError("ONNX model not found", path=self.path)
        self.metadata = metadata if metadata is not None else read_model_metadata(self.path)
        self.class_map = ClassMap.from_dict(self.metadata["classes"])
        self.imgsz = (int(self.metadata["imgsz"][0]), int(self.metadata["imgsz"][1]))
        self.threads = threads
        self.batch_size = max(1, int(batch_size))
        batch_dims, self.output_names = self._open()
        if set(batch_dims) != set(INPUT_NAMES):
            raise DetkitError(
                f"ONNX model inputs are {sorted(batch_dims)}, expected images and orig_sizes",
                hint="export it with `detkit export onnx`",
                path=self.path,
            )
        self.fixed_batch = batch_dims["images"]
        self.calibrator = _embedded_calibrator(self.metadata.get("calibrator"), self.path)

    def _open(self) -> tuple[dict[str, int | None], list[str]]:
        """Open the file in the runtime: ({input name: fixed batch size or None}, output names in graph order)."""
        raise NotImplementedError

    def _forward(self, images: np.ndarray, orig_sizes: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs (in ``output_names`` order) for one batch of the graph's batch size."""
        raise NotImplementedError

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
        named = dict(zip(self.output_names, self._forward(images, orig_sizes)))
        scores = np.asarray(named["scores"], dtype=np.float32)
        raw = np.asarray(named["raw_scores"], dtype=np.float32) if "raw_scores" in named else scores
        return (np.asarray(named["labels"], dtype=np.int64), np.asarray(named["boxes"], dtype=np.float32), scores, raw)

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

    def check_request(self, class_map: ClassMap | None, imgsz: Any, class_map_label: str) -> None:
        """Refuse a requested class map or input size the graph does not have (``open_detector``'s arguments)."""
        if class_map is not None:
            self.class_map.check_same(
                class_map,
                f"the ONNX model {self.path}",
                class_map_label,
                hint="export a model trained on these classes",
            )
        if imgsz is not None:
            want = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(int(v) for v in imgsz)
            if tuple(want) != self.imgsz:
                raise DetkitError(
                    f"the ONNX graph is fixed at {self.imgsz[0]}×{self.imgsz[1]}, not {want[0]}×{want[1]}",
                    hint="re-export with --imgsz",
                    path=self.path,
                )


def _embedded_calibrator(raw: dict[str, Any] | None, path: Path):
    if not raw:
        return None
    from detkit.calibration.io import calibrator_from_dict

    try:
        return calibrator_from_dict(raw)
    except Exception as e:
        raise DetkitError(f"embedded calibrator is invalid: {e}", hint="re-export the model", path=path) from e
