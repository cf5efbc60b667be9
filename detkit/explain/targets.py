"""Which detections to explain, and (for PyTorch models) which decoder query produced each one.

The detections are exactly what ``predict`` reports: the model's top-k over queries × classes from the shared
post-processor, sorted by score; the ``top`` best with score >= ``conf`` are explained. For a PyTorch model the
forward is run here (pre-processing → module → post-processing, the same functions the detector uses) so that the
query behind each detection is known: its class probability and box equal the detection's exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detkit.errors import DetkitError

TORCH_METHODS = ("sampling", "gradcam")


@dataclass
class Targets:
    """The detections of one image chosen for explanation (rows aligned), boxes xyxy in original pixels."""

    boxes: np.ndarray  # float32 [k, 4]
    scores: np.ndarray  # float32 [k]
    labels: np.ndarray  # int64 [k] model label index
    queries: np.ndarray | None = None  # int64 [k] decoder query index (PyTorch models only)

    def __len__(self) -> int:
        return len(self.scores)


def check_selection(top: int, conf: float) -> None:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise DetkitError(
            f"top must be a whole number >= 1, got {top!r}", hint="explain at least one detection per image"
        )
    if not 0.0 <= float(conf) < 1.0:
        raise DetkitError(f"conf must be in [0, 1), got {conf!r}", hint="scores are probabilities")


def select(scores: np.ndarray, top: int, conf: float) -> np.ndarray:
    """Row indices of the ``top`` highest scores with score >= ``conf`` (input need not be sorted)."""
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= conf]
    return order[:top]


def torch_module(detector: Any, method: str) -> Any:
    """The RT-DETR module behind a detector, or a one-line error when ``method`` needs one and there is none."""
    module = getattr(detector, "module", None)
    if module is None or not hasattr(module, "record_intermediates"):
        kind = "an ONNX model" if hasattr(detector, "session") else f"a {type(detector).__name__}"
        raise DetkitError(
            f"method '{method}' needs a PyTorch RT-DETR model (run dir or checkpoint), got {kind}",
            hint="use method 'drise', which works on any detector including ONNX files",
        )
    return module


def model_batch(detector: Any, image: np.ndarray) -> tuple[Any, Any]:
    """(uint8 batch [1,3,H,W] on the module's device, orig size [1,2] (w, h)) for one uint8 HWC RGB image."""
    from detkit.data.images import to_batch

    batch, sizes = to_batch([image], tuple(detector.imgsz))
    device = next(detector.module.parameters()).device
    return batch.to(device), sizes.to(device)


def find_queries(
    out: dict, sizes: Any, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray | None = None
) -> np.ndarray:
    """The query of image 0 behind each detection (xyxy px, label, raw score): the query whose box is closest to
    the detection's (L1, pixels), ties broken by the score of that label (exact for un-calibrated scores)."""
    import torch

    from detkit.models.layers import box_cxcywh_to_xyxy

    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    with torch.no_grad():
        scale = sizes[0].detach().cpu().to(torch.float32).repeat(2)
        xyxy = box_cxcywh_to_xyxy(out["boxes"][0].detach().float().cpu()) * scale  # [Q, 4]
        gap = (xyxy[:, None, :] - torch.as_tensor(boxes, dtype=torch.float32)[None]).abs().sum(-1)  # [Q, k]
        if scores is not None:
            lab = torch.as_tensor(labels, dtype=torch.long)
            probs = out["logits"][0].detach().float().cpu().sigmoid()[:, lab]  # [Q, k]
            gap = gap + (probs - torch.as_tensor(scores, dtype=torch.float32)[None]).abs()
        return gap.argmin(0).numpy().astype(np.int64)


def targets_from_outputs(out: dict, sizes: Any, top: int, conf: float) -> Targets:
    """Post-process one image's raw outputs, keep the chosen detections and find the query of each."""
    import torch

    from detkit.models.postprocess import postprocess

    with torch.no_grad():
        labels, boxes, scores = (
            t[0].cpu().numpy()
            for t in postprocess(out["logits"][:1].detach().float(), out["boxes"][:1].detach().float(), sizes[:1])
        )
    keep = select(scores, top, conf)
    lab, box, sc = labels[keep].astype(np.int64), boxes[keep].astype(np.float32), scores[keep].astype(np.float32)
    return Targets(box, sc, lab, find_queries(out, sizes, box, lab, sc))
