"""``explain``: maps of what each of the top detections of an image rests on, written as pictures and JSON.

Output folder (assembled under a temporary name, renamed when complete)::

    explanations.json            method, model, per image: size, contact sheet, per detection: class, score,
                                 box (COCO xywh px), picture, peak (x, y px), mass_inside, box_share
    <stem>.png                   contact sheet: the annotated image, then one picture per detection
    <stem>/<rank>_<class>.png    the map over the image with the detection's box and label
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
        raise DetkitError(f"unknown explanation method '{method}'{guess}",
                          hint=f"choose one of {', '.join(METHODS)}")
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


def explain_detections(detector: Any, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                       scores: np.ndarray, method: str = DEFAULT_METHOD, masks: int = DEFAULT_MASKS,
                       seed: int = 0) -> ImageExplanation:
    """Explain given detections of one image (xyxy px, labels, scores as the detector reported them)."""
    method = resolve_method(detector, method)
    given = Targets(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                    np.asarray(labels, np.int64))
    if method == "drise":
        from detkit.explain.drise import drise_maps

        return ImageExplanation(given, drise_maps(detector, image, given, masks=masks, seed=seed))

    def choose(out, sizes):
        given.queries = find_queries(out, sizes, given.boxes, given.labels, given.scores)
        return given

    return _torch_explanation(detector, image, method, choose)


def explain_image(detector: Any, image: np.ndarray, method: str = DEFAULT_METHOD, top: int = DEFAULT_TOP,
                  conf: float = DEFAULT_CONF, masks: int = DEFAULT_MASKS, seed: int = 0) -> ImageExplanation:
    """Explain the ``top`` best detections (score >= ``conf``) of one uint8 HWC RGB image with ``method``."""
    check_selection(top, conf)
    method = resolve_method(detector, method)
    if method == "drise":
        if masks < 1:
            raise DetkitError(f"masks must be >= 1, got {masks}")
        d = detector.predict([image], conf=conf)[0]
        keep = select(np.asarray(d.scores), top, conf)
        return explain_detections(detector, image, np.asarray(d.boxes)[keep], np.asarray(d.labels)[keep],
                                  np.asarray(d.scores)[keep], "drise", masks, seed)
    return _torch_explanation(detector, image, method, lambda out, sizes: targets_from_outputs(out, sizes, top, conf))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


def explain(model: Any, images: Sequence[str | Path], out: str | Path, method: str | None = None,
            top: int = DEFAULT_TOP, conf: float = DEFAULT_CONF, masks: int = DEFAULT_MASKS, device: str | None = None,
            overwrite: bool = False, seed: int = 0) -> ExplainResult:
    """Explain the top detections of every image in ``images`` (files or folders) into the folder ``out``.

    ``model`` is a run dir, checkpoint or ONNX file, or a detector object. ``method`` defaults to
    :data:`DEFAULT_METHOD` for PyTorch models and ``drise`` for others. Unreadable images are reported in
    ``skipped``; it is an error only when none could be explained.
    """
    import cv2

    from detkit.explain.render import contact_sheet, detection_picture, write_png
    from detkit.models.preprocess import load_image
    from detkit.predict import collect_sources, load_predictor
    from detkit.utils.atomic import atomic_dir, atomic_write_json
    from detkit.utils.draw import draw_boxes
    from detkit.utils.progress import track

    check_selection(top, conf)
    if masks < 1:
        raise DetkitError(f"masks must be >= 1, got {masks}")
    items, skipped = collect_sources(images)
    for path, kind in [i for i in items if i[1] != "image"]:
        skipped.append({"source": str(path), "reason": f"explain takes images, not {kind}s"})
    paths = [p for p, kind in items if kind == "image"]
    if not paths:
        shown = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:3])
        raise DetkitError(f"no images to explain: {shown}" if shown else "no images to explain",
                          hint="pass image files (.jpg, .png, ...) or folders holding them")
    detector = model if hasattr(model, "predict") else load_predictor(model, device=device)[0]
    method = resolve_method(detector, method)
    names = detector.class_map.names
    result = ExplainResult(Path(out), method, skipped=skipped)
    used: set[str] = set()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for path in track(paths, "explain"):
            try:
                image = load_image(path)
            except DetkitError as e:
                skipped.append({"source": str(path), "reason": e.message.removeprefix(f"{path}: ")})
                continue
            ex = explain_image(detector, image, method, top, conf, masks, seed)
            stem, n = _safe_name(path.stem), 1
            while stem in used:
                n += 1
                stem = f"{_safe_name(path.stem)}_{n}"
            used.add(stem)
            stats, t = ex.stats, ex.targets
            pictures, records = [], []
            for i in range(len(t)):
                pic = detection_picture(image, ex.maps[i], t.boxes[i], int(t.labels[i]), float(t.scores[i]), names,
                                        ex.points[i] if ex.points else None)
                rel = f"{stem}/{i + 1}_{_safe_name(names[int(t.labels[i])])}.png"
                (tmp / stem).mkdir(exist_ok=True)
                write_png(tmp / rel, pic)
                pictures.append(pic)
                x0, y0, x1, y1 = (float(v) for v in t.boxes[i])
                records.append({
                    "rank": i + 1, "class": names[int(t.labels[i])],
                    "category_id": int(detector.class_map.labels_to_category_ids(t.labels[i:i + 1])[0]),
                    "score": round(float(t.scores[i]), 6),
                    "bbox": [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)], "picture": rel,
                    "peak": [round(float(v), 1) for v in stats["peak"][i]],
                    "mass_inside": _round(stats["mass_inside"][i]), "box_share": _round(stats["box_share"][i]),
                })
            f = pictures[0].shape[0] / image.shape[0] if pictures else 1.0
            big = image if f <= 1 else cv2.resize(image, (pictures[0].shape[1], pictures[0].shape[0]),
                                                  interpolation=cv2.INTER_NEAREST)
            annotated = draw_boxes(big, t.boxes * f, t.labels, names, t.scores, to_bgr=True)
            write_png(tmp / f"{stem}.png", contact_sheet(annotated, pictures))
            result.images.append({"source": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]),
                                  "sheet": f"{stem}.png", "detections": records})
        if not result.images:
            shown = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:3])
            raise DetkitError(f"nothing could be explained: {shown}", hint="check that the files are readable images")
        meta = {"method": method, "model": str(model) if isinstance(model, (str, Path)) else type(model).__name__,
                "top": top, "conf": conf, "masks": masks if method == "drise" else None}
        atomic_write_json(tmp / "explanations.json", {**meta, "images": result.images, "skipped": skipped})
    return result


def _round(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)
