"""``explain()``: the library entry point behind ``detkit explain``: maps of what each of the top detections of an
image rests on, written as pictures and JSON.

Output folder (assembled under a temporary name, renamed when complete)::

    explanations.json            method, model, per image: size, contact sheet, per detection: class, score,
                                 box (COCO xywh px), picture, peak (x, y px), mass_inside, box_share
    <stem>.png                   contact sheet: the annotated image, then one picture per detection
    <stem>/<rank>_<class>.png    the map over the image with the detection's box and label
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detkit.errors import DetkitError
from detkit.explain.run import DEFAULT_CONF, DEFAULT_MASKS, DEFAULT_TOP, ExplainResult, explain_image, resolve_method
from detkit.explain.targets import check_selection


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


def explain(
    model: Any,
    images: Sequence[str | Path],
    out: str | Path,
    method: str | None = None,
    top: int = DEFAULT_TOP,
    conf: float = DEFAULT_CONF,
    masks: int = DEFAULT_MASKS,
    device: str | None = None,
    overwrite: bool = False,
    seed: int = 0,
) -> ExplainResult:
    """Explain the top detections of every image in ``images`` (files or folders) into the folder ``out``.

    ``model`` is a run dir, checkpoint or ONNX file, or a detector object. ``method`` defaults to
    :data:`DEFAULT_METHOD` for PyTorch models and ``drise`` for others. Unreadable images are reported in
    ``skipped``; it is an error only when none could be explained.
    """
    import cv2

    from detkit.data.images import load_image
    from detkit.explain.render import contact_sheet, detection_picture, write_png
    from detkit.stages.predict import collect_sources, load_predictor
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
        raise DetkitError(
            f"no images to explain: {shown}" if shown else "no images to explain",
            hint="pass image files (.jpg, .png, ...) or folders holding them",
        )
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
                pic = detection_picture(
                    image,
                    ex.maps[i],
                    t.boxes[i],
                    int(t.labels[i]),
                    float(t.scores[i]),
                    names,
                    ex.points[i] if ex.points else None,
                )
                rel = f"{stem}/{i + 1}_{_safe_name(names[int(t.labels[i])])}.png"
                (tmp / stem).mkdir(exist_ok=True)
                write_png(tmp / rel, pic)
                pictures.append(pic)
                x0, y0, x1, y1 = (float(v) for v in t.boxes[i])
                records.append(
                    {
                        "rank": i + 1,
                        "class": names[int(t.labels[i])],
                        "category_id": int(detector.class_map.labels_to_category_ids(t.labels[i : i + 1])[0]),
                        "score": round(float(t.scores[i]), 6),
                        "bbox": [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                        "picture": rel,
                        "peak": [round(float(v), 1) for v in stats["peak"][i]],
                        "mass_inside": _round(stats["mass_inside"][i]),
                        "box_share": _round(stats["box_share"][i]),
                    }
                )
            f = pictures[0].shape[0] / image.shape[0] if pictures else 1.0
            big = (
                image
                if f <= 1
                else cv2.resize(image, (pictures[0].shape[1], pictures[0].shape[0]), interpolation=cv2.INTER_NEAREST)
            )
            annotated = draw_boxes(big, t.boxes * f, t.labels, names, t.scores, to_bgr=True)
            write_png(tmp / f"{stem}.png", contact_sheet(annotated, pictures))
            result.images.append(
                {
                    "source": str(path),
                    "width": int(image.shape[1]),
                    "height": int(image.shape[0]),
                    "sheet": f"{stem}.png",
                    "detections": records,
                }
            )
        if not result.images:
            shown = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:3])
            raise DetkitError(f"nothing could be explained: {shown}", hint="check that the files are readable images")
        meta = {
            "method": method,
            "model": str(model) if isinstance(model, (str, Path)) else type(model).__name__,
            "top": top,
            "conf": conf,
            "masks": masks if method == "drise" else None,
        }
        atomic_write_json(tmp / "explanations.json", {**meta, "images": result.images, "skipped": skipped})
    return result


def _round(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)
