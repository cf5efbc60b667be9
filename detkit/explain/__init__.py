"""Explanation maps for detections: what each detection rests on (``detkit explain``, eval failure galleries).

Methods: ``sampling`` (the decoder's deformable-attention sampling points of the detection's query; PyTorch
models, one forward), ``gradcam`` (LayerCAM of the detection's class logit on the backbone stages, through the
``grad-cam`` package; PyTorch models), ``drise`` (random-mask saliency; any detector with ``predict``, ONNX too).
See docs/explain.md.
"""

from detkit.explain.run import (
    DEFAULT_METHOD,
    METHODS,
    ExplainResult,
    ImageExplanation,
    explain_detections,
    explain_image,
    resolve_method,
)

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "ExplainResult",
    "ImageExplanation",
    "explain_detections",
    "explain_image",
    "resolve_method",
]
