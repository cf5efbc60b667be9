"""Explanation maps of one image's detections (``explain_image``) or of given boxes (``explain_detections``).

The stage that explains a list of files into a folder is :func:`detkit.stages.explain.explain`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detkit.errors import DetkitError
from detkit.explain.targets import (
    TORCH_METHODS,
    Targets,
    check_selection,
    find_queries,
    model_batch,
    select,
    targets_from_outputs,
    torch_module,
)

METHODS = ("sampling", "gradcam", "drise")
DEFAULT_METHOD = "sampling"  # see docs/explain.md: best sanity numbers at the cost of one forward
DEFAULT_TOP = 5
DEFAULT_CONF = 0.3
DEFAULT_MASKS = 256


@dataclass
class ImageExplanation:
    """Maps ``[k, H, W]`` for the chosen detections of one image (original pixels), and their statistics."""

    targets: Targets
    maps: np.ndarray
    points: list | None = None  # SamplingPoints per detection (sampling method only)

    @property
    def stats(self) -> dict[str, np.ndarray]:
        from detkit.explain.stats import map_stats

        return map_stats(self.maps, self.targets.boxes)


@dataclass
class ExplainResult:
    out_dir: Path
    method: str
    images: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "method": self.method, "images": self.images, "skipped": self.skipped}


def resolve_method(detector: Any, method: str | None) -> str:
    """``method`` checked against what the detector supports; ``None`` → the default this detector can run."""
    if method is None:
        return DEFAULT_METHOD if getattr(getattr(detector, "module", None), "record_intermediates", None) else "drise"
    if method not in METHODS:
        import difflib

        close = difflib.get_close_matches(str(method), METHODS, n=1)
        guess = f" (did you mean '{close[0]}'?)" if close else ""
        raise DetkitError(f"unknown explanation method '{method}'{guess}", hint=f"choose one of {', '.join(METHODS)}")
    if method in TORCH_METHODS:
        torch_module(detector, method)
    return method


def _torch_explanation(detector: Any, image: np.ndarray, method: str, choose) -> ImageExplanation:
    """One forward (recorded for ``sampling``), ``choose(out, sizes) -> Targets``, then the maps."""
    import torch

    module = torch_module(detector, method)
    batch, sizes = model_batch(detector, image)
    hw = image.shape[:2]
    was_training = module.training
    module.eval()
    try:
        if method == "sampling":
            from detkit.explain.sampling import sampling_maps

            with torch.inference_mode(), module.record_intermediates() as trace:
                out = module(batch)
            targets = choose(out, sizes)
            maps, points = sampling_maps(trace, targets.queries, hw)
            return ImageExplanation(targets, maps, points)
        from detkit.explain.gradcam import gradcam_maps

        with torch.inference_mode():
            out = module(batch)
        targets = choose(out, sizes)
        return ImageExplanation(targets, gradcam_maps(module, batch, targets.queries, targets.labels, hw))
    finally:
        module.train(was_training)


def explain_detections(
    detector: Any,
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    method: str = DEFAULT_METHOD,
    masks: int = DEFAULT_MASKS,
    seed: int = 0,
) -> ImageExplanation:
    """Explain given detections of one image (xyxy px, labels, scores as the detector reported them)."""
    method = resolve_method(detector, method)
    given = Targets(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(labels, np.int64)
    )
    if method == "drise":
        from detkit.explain.drise import drise_maps

        return ImageExplanation(given, drise_maps(detector, image, given, masks=masks, seed=seed))

    def choose(out, sizes):
        given.queries = find_queries(out, sizes, given.boxes, given.labels, given.scores)
        return given

    return _torch_explanation(detector, image, method, choose)


def explain_image(
    detector: Any,
    image: np.ndarray,
    method: str = DEFAULT_METHOD,
    top: int = DEFAULT_TOP,
    conf: float = DEFAULT_CONF,
    masks: int = DEFAULT_MASKS,
    seed: int = 0,
) -> ImageExplanation:
    """Explain the ``top`` best detections (score >= ``conf``) of one uint8 HWC RGB image with ``method``."""
    check_selection(top, conf)
    method = resolve_method(detector, method)
    if method == "drise":
        if masks < 1:
            raise DetkitError(f"masks must be >= 1, got {masks}")
        d = detector.predict([image], conf=conf)[0]
        keep = select(np.asarray(d.scores), top, conf)
        return explain_detections(
            detector,
            image,
            np.asarray(d.boxes)[keep],
            np.asarray(d.labels)[keep],
            np.asarray(d.scores)[keep],
            "drise",
            masks,
            seed,
        )
    return _torch_explanation(detector, image, method, lambda out, sizes: targets_from_outputs(out, sizes, top, conf))
