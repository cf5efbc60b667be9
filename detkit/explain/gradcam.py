"""Gradient maps (LayerCAM / Grad-CAM from the ``grad-cam`` package) of one detection's class score.

``grad-cam`` computes the maps; what it lacks for a DETR is the *target*: a detection is one decoder query and
one class, so :class:`DetrQueryTarget` returns that query's class logit (before the sigmoid, which saturates for
confident detections). The hooked layers are the backbone stages that feed the encoder (strides 8, 16, 32); the
package normalises each layer's map to [0, 1], resizes it to the input and averages them.

All targets of an image go through one batched forward and backward: batch item ``i`` is the image again and
its loss term is target ``i`` alone, so gradients do not mix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

CAMS = ("layercam", "gradcam")


class DetrQueryTarget:
    """``grad-cam`` target: the raw class logit of one (query, class) pair of a model output ``[Q, K]``."""

    def __init__(self, query: int, label: int):
        self.query, self.label = int(query), int(label)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[self.query, self.label]


class _Logits(nn.Module):
    """The module's class logits ``[B, Q, K]`` (``grad-cam`` iterates a tensor output per batch item)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(images)["logits"]


def target_layers(module: nn.Module) -> list[nn.Module]:
    """The backbone stages whose outputs feed the encoder (the model's ``feature_layers()``)."""
    layers = getattr(module, "feature_layers", None)
    if layers is None:
        from detkit.errors import DetkitError

        raise DetkitError(f"gradcam needs a detkit model with feature_layers(), got {type(module).__name__}")
    return list(layers())


def gradcam_maps(
    module: nn.Module,
    batch: torch.Tensor,
    queries: np.ndarray,
    labels: np.ndarray,
    image_hw: tuple[int, int],
    cam: str = "layercam",
) -> np.ndarray:
    """Maps ``[k, H, W]`` in [0, 1] (original image size) for the given (query, label) pairs of ``batch[0]``."""
    import cv2
    from pytorch_grad_cam import GradCAM, LayerCAM

    h, w = image_hw
    if len(queries) == 0:
        return np.zeros((0, h, w), np.float32)
    method = {"layercam": LayerCAM, "gradcam": GradCAM}[cam]
    images = batch[:1].float().div(255.0).expand(len(queries), -1, -1, -1).contiguous()
    engine: Any = method(model=_Logits(module), target_layers=target_layers(module))
    was_training = module.training
    try:
        with torch.enable_grad():
            maps = engine(images, targets=[DetrQueryTarget(q, c) for q, c in zip(queries.tolist(), labels.tolist())])
    finally:
        engine.activations_and_grads.release()
        module.train(was_training)
        module.zero_grad(set_to_none=True)
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps]).astype(np.float32)
