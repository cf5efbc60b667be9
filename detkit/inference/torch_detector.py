"""``TorchDetector``: any RT-DETR module (a loaded model or training's EMA model) with pre- and post-processing.

Inference is pre-processing (:mod:`detkit.data.images`) → module → post-processing
(:mod:`detkit.models.postprocess`): the same code the evaluation and the ONNX export use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detkit.data.classmap import ClassMap
from detkit.data.images import as_image, to_batch
from detkit.errors import DetkitError
from detkit.evaluation.detections import DetectionTable
from detkit.inference.types import DEFAULT_IMGSZ, Detections, ImageLike, size_hw
from detkit.models.postprocess import COCO_TOP_K, postprocess
from detkit.utils.device import resolve_device


class TorchDetector:
    """The PyTorch backend of :class:`detkit.inference.Detector` (``detkit.Detector`` is this class)."""

    backend = "torch"

    def __init__(
        self,
        module: nn.Module,
        class_map: ClassMap,
        imgsz: int | Sequence[int] = DEFAULT_IMGSZ,
        device: str | torch.device | None = None,
        recipe: Any = None,
        batch_size: int = 8,
        top_k: int = COCO_TOP_K,
        source: str | Path | None = None,
    ):
        self.module = module
        self.class_map = class_map
        self.imgsz = size_hw(imgsz)
        self.device = resolve_device(device) if device is not None else next(module.parameters()).device
        self.recipe = recipe
        self.batch_size = max(1, int(batch_size))
        self.top_k = top_k
        self.source = Path(source) if source is not None else None
        self.module.to(self.device)

    def __repr__(self) -> str:
        return (
            f"TorchDetector({type(self.module).__name__}, {len(self.class_map)} classes, imgsz={self.imgsz}, "
            f"device={self.device})"
        )

    @torch.inference_mode()
    def _run(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch, sizes = to_batch(arrays, self.imgsz)
        out = self.module(batch.to(self.device, non_blocking=True))
        labels, boxes, scores = postprocess(out["logits"], out["boxes"], sizes.to(self.device), self.top_k)
        return labels.cpu().numpy(), boxes.float().cpu().numpy(), scores.float().cpu().numpy()

    def predict(self, images: ImageLike | Sequence[ImageLike], conf: float = 0.0) -> list[Detections]:
        """Detections for each image (paths or uint8 HWC RGB arrays); scores below ``conf`` are dropped."""
        if isinstance(images, (str, Path, np.ndarray)):
            images = [images]
        items = list(images)
        results: list[Detections] = []
        was_training = self.module.training
        self.module.eval()
        try:
            for start in range(0, len(items), self.batch_size):
                arrays = [as_image(x, start + i) for i, x in enumerate(items[start : start + self.batch_size])]
                labels, boxes, scores = self._run(arrays)
                for lab, box, sc in zip(labels, boxes, scores):
                    keep = sc >= conf
                    lab = lab[keep].astype(np.int64)
                    results.append(Detections(box[keep], sc[keep], lab, self.class_map.labels_to_category_ids(lab)))
        finally:
            self.module.train(was_training)
        return results

    def predict_table(self, images: Sequence[ImageLike], image_ids: Sequence[int], conf: float = 0.0) -> DetectionTable:
        """All detections of ``images`` as one table (COCO xywh boxes, original category ids)."""
        if len(images) != len(image_ids):
            raise DetkitError(f"{len(images)} images but {len(image_ids)} image ids")
        dets = self.predict(images, conf=conf)
        return DetectionTable.concat(
            DetectionTable.from_xyxy(int(i), d.boxes, d.scores.astype(np.float64), d.category_ids)
            for i, d in zip(image_ids, dets)
        )
