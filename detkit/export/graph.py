"""The deployable graph: raw uint8 images and original sizes in, labels, pixel boxes and (calibrated) scores out.

It is nothing but the model's own pieces chained together, so the exported graph cannot drift from PyTorch:
the detector in its deployment form (``module.deploy()``), the single post-processor of
``detkit.models.postprocess`` and, when given, the calibrator's torch ``apply`` (the single implementation).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

INPUT_NAMES = ("images", "orig_sizes")
OUTPUT_NAMES = ("labels", "boxes", "scores")
CALIBRATED_OUTPUT_NAMES = (*OUTPUT_NAMES, "raw_scores")

# How the graph's input is encoded; recorded in the sidecar and checked by the runtime.
INPUT_SPEC = {
    "images": "uint8 [N,3,H,W] RGB at the model input size (stretch-resized with OpenCV INTER_LINEAR); "
    "the graph divides by 255 itself, no mean/std normalisation",
    "orig_sizes": "int64 [N,2] original image (width, height), used to scale boxes back to original pixels",
}
OUTPUT_SPEC = {
    "labels": "int64 [N,K] model label index (class_map.names order)",
    "boxes": "float32 [N,K,4] xyxy in original-image pixels",
    "scores": (
        "float32 [N,K] confidence (calibrated when the sidecar names a calibrator), top-K order of the raw scores"
    ),
    "raw_scores": "float32 [N,K] uncalibrated scores (only in graphs exported with a calibrator)",
}


def deploy_copy(module: nn.Module, decoder_layers: int | None = None) -> nn.Module:
    """A deployment-form (``deploy()``), eval-mode copy of ``module`` (the caller's module is left untouched)."""
    m = copy.deepcopy(module).cpu().float().eval()
    m.deploy()
    if decoder_layers is not None:
        set_decoder_layers(m, decoder_layers)
    return m.eval()


def set_decoder_layers(module: nn.Module, k: int) -> None:
    """Run only the first ``k`` decoder layers (any prefix of the decoder is a valid detector)."""
    module.set_eval_layers(int(k))


def decoder_layers_of(module: nn.Module) -> tuple[int, int]:
    """(layers run at inference, layers trained)."""
    return int(module.eval_layers), int(module.decoder_layers)


class DeployGraph(nn.Module):
    """``forward(images, orig_sizes) -> (labels, boxes, scores[, raw_scores])``; what ``export_onnx`` traces.

    With a calibrator (``detkit.calibration.apply.CalibrationModule``) ``scores`` are calibrated and the raw
    scores are returned as a fourth output, ``raw_scores``, which the calibrator's operating point (its
    pre-thresholds on raw scores) needs.
    """

    def __init__(self, module: nn.Module, calibrator: nn.Module | None = None, top_k: int = 300):
        super().__init__()
        self.module = module
        self.calibrator = calibrator
        self.top_k = top_k

    def forward(self, images: torch.Tensor, orig_sizes: torch.Tensor):
        from detkit.models.postprocess import postprocess

        out = self.module(images)
        labels, boxes, scores = postprocess(out["logits"], out["boxes"], orig_sizes, top_k=self.top_k)
        if self.calibrator is None:
            return labels, boxes, scores
        return labels, boxes, self.calibrator(scores, labels), scores
