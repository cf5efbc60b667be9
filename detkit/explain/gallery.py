"""Failure gallery of an evaluation: the worst false positives and the missed objects, as crops with their maps.

At the operating point (score >= ``score_threshold``, matched to ground truth at IoU ``iou_threshold`` with the
one matcher, :func:`detkit.evaluation.matching.match_detections`):

- *false positives*: unmatched detections, highest score first;
- *missed objects*: ground truths no detection above the threshold matched, largest first. Each is shown with
  the detection of any score that overlaps it most (what the model made of it, and why it stayed low).

Each crop is cut around the box (with context) from the image with the explanation map of that detection (the
cheap default method; only PyTorch detectors have one — otherwise the crop alone). At most ``max_items`` of each,
so the cost is a handful of forwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detkit.errors import DetkitError

GALLERY_SCORE = 0.3  # the operating threshold of the gallery (the confusion matrix's)
GALLERY_IOU = 0.5
MAX_ITEMS = 6
TILE = 200
FP_COLOUR = (60, 60, 255)  # BGR red
GT_COLOUR = (80, 220, 80)  # BGR green


@dataclass
class GalleryItem:
    kind: str  # "fp" | "missed"
    image_id: int
    file_name: str
    box: list[float]  # COCO xywh: the FP detection, or the missed ground truth
    class_name: str
    score: float | None  # the FP's score, or the best-overlapping detection's score for a miss
    detection_class: str | None = None  # missed: class of the best-overlapping detection
    detection_iou: float | None = None  # missed: its IoU with the ground truth
    mass_inside: float | None = None  # share of the map's mass inside the detection's box


@dataclass
class Gallery:
    score_threshold: float
    iou_threshold: float
    num_fp: int
    num_missed: int
    method: str | None
    items: list[GalleryItem] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)  # kind -> path relative to the eval dir


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    return np.concatenate([xywh[..., :2], xywh[..., :2] + xywh[..., 2:]], -1)


def _explainer(detector: Any) -> str | None:
    """The default method when this detector can run it cheaply, else None (crops only)."""
    if detector is None:
        return None
    from detkit.explain.run import DEFAULT_METHOD, resolve_method

    method = resolve_method(detector, None)
    return method if method == DEFAULT_METHOD else None


def _crop(picture: np.ndarray, box_xyxy: np.ndarray) -> np.ndarray:
    """A square-ish window around the box with half its size as context on each side (at least 48 px)."""
    h, w = picture.shape[:2]
    bw, bh = box_xyxy[2] - box_xyxy[0], box_xyxy[3] - box_xyxy[1]
    side = max(48.0, 2.0 * max(bw, bh))
    cx, cy = (box_xyxy[0] + box_xyxy[2]) / 2, (box_xyxy[1] + box_xyxy[3]) / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    return picture[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]


def _tile(crop: np.ndarray, caption: str) -> np.ndarray:
    import cv2

    h, w = crop.shape[:2]
    s = TILE / max(h, w)
    img = cv2.resize(crop, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    tile = np.full((TILE + 22, TILE, 3), 32, np.uint8)
    tile[: img.shape[0], : img.shape[1]] = img
    cv2.putText(tile, caption[:30], (3, TILE + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _sheet(tiles: list[np.ndarray], cols: int = 3) -> np.ndarray:
    th, tw = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    cols = min(cols, len(tiles))
    sheet = np.full((rows * (th + 4) + 4, cols * (tw + 4) + 4, 3), 16, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[4 + r * (th + 4) : 4 + r * (th + 4) + th, 4 + c * (tw + 4) : 4 + c * (tw + 4) + tw] = t
    return sheet


def failure_gallery(
    detector: Any,
    dets: Any,
    gt: Any,
    images_dir: str | Path,
    class_map: Any,
    plots_dir: Path,
    score_threshold: float = GALLERY_SCORE,
    iou_threshold: float = GALLERY_IOU,
    max_items: int = MAX_ITEMS,
    annotations_source: str | Path = "annotations",
) -> Gallery:
    """Pick the failures, write ``plots_dir/failures_fp.png`` and ``failures_missed.png``, return what they show.

    ``dets`` is the evaluated :class:`DetectionTable` (COCO xywh, original category ids), ``gt`` the split's
    :class:`CocoData`; ``detector`` (or None) gives the maps.
    """
    import cv2

    from detkit.data.coco import image_file
    from detkit.data.images import load_image
    from detkit.evaluation.detections import DetectionTable
    from detkit.evaluation.matching import match_detections
    from detkit.explain.drise import pairwise_iou
    from detkit.explain.render import heat_overlay, write_png

    above = np.flatnonzero(dets.scores >= score_threshold)
    sub = DetectionTable(dets.image_ids[above], dets.category_ids[above], dets.boxes[above], dets.scores[above])
    match = match_detections(sub, gt, iou_threshold)
    fp_rows = above[np.flatnonzero(match.fp)]
    fp_rows = fp_rows[np.argsort(-dets.scores[fp_rows], kind="stable")]
    missed = np.flatnonzero(match.fn_gt)
    gt_boxes = gt.boxes_array().reshape(-1, 4)
    missed = missed[np.argsort(-(gt_boxes[missed, 2] * gt_boxes[missed, 3]), kind="stable")]
    method = _explainer(detector)
    gallery = Gallery(score_threshold, iou_threshold, len(fp_rows), len(missed), method)
    files = {int(im["id"]): im["file_name"] for im in gt.images}
    cat_to_label = {int(c): i for i, c in enumerate(class_map.category_ids)}
    names = class_map.names

    # (kind, image id, box xywh, the detection row whose map is shown or -1, the GT annotation index or -1)
    picks: list[tuple[str, int, np.ndarray, int, int]] = []
    for r in fp_rows[:max_items]:
        picks.append(("fp", int(dets.image_ids[r]), dets.boxes[r], int(r), -1))
    for g in missed[:max_items]:
        ann = gt.annotations[g]
        same = np.flatnonzero(dets.image_ids == int(ann["image_id"]))
        best = -1
        if len(same):
            ious = pairwise_iou(_xyxy(gt_boxes[g : g + 1]), _xyxy(dets.boxes[same]))[0]
            if ious.max() > 0:
                best = int(same[int(ious.argmax())])
        picks.append(("missed", int(ann["image_id"]), gt_boxes[g], best, int(g)))

    done: dict[int, tuple[GalleryItem, np.ndarray]] = {}  # pick index -> (item, crop BGR)
    for image_id in dict.fromkeys(p[1] for p in picks):
        here = [(i, p) for i, p in enumerate(picks) if p[1] == image_id]
        try:
            image = load_image(image_file(Path(images_dir), files[image_id], annotations_source))
        except DetkitError:
            continue  # a predictions-file evaluation may lack the images: those failures are listed without crops
        rows = np.unique(np.array([p[3] for _, p in here if p[3] >= 0], np.int64))
        maps: dict[int, np.ndarray] = {}
        mass: dict[int, float] = {}
        if method is not None and len(rows):
            from detkit.explain.run import explain_detections

            labels = np.array([cat_to_label[int(c)] for c in dets.category_ids[rows]], np.int64)
            ex = explain_detections(detector, image, _xyxy(dets.boxes[rows]), labels, dets.scores[rows], method)
            stats = ex.stats
            for j, r in enumerate(rows.tolist()):
                maps[r], mass[r] = ex.maps[j], float(stats["mass_inside"][j])
        for i, (kind, _, box, row, g) in here:
            pic = heat_overlay(image, maps[row]) if row in maps else image
            bgr = cv2.cvtColor(pic, cv2.COLOR_RGB2BGR)
            xyxy = _xyxy(np.asarray(box, np.float64))
            if kind == "missed":
                cv2.rectangle(bgr, *_corners(xyxy), GT_COLOUR, 1, cv2.LINE_AA)
            if row >= 0:
                cv2.rectangle(bgr, *_corners(_xyxy(dets.boxes[row])), FP_COLOUR, 1, cv2.LINE_AA)
            det_name = names[cat_to_label[int(dets.category_ids[row])]] if row >= 0 else None
            if kind == "fp":
                item = GalleryItem(
                    "fp",
                    image_id,
                    files[image_id],
                    _r(box),
                    det_name,
                    float(dets.scores[row]),
                    mass_inside=mass.get(row),
                )
            else:
                ann = gt.annotations[g]
                gt_label = cat_to_label.get(int(ann["category_id"]))
                gt_name = names[gt_label] if gt_label is not None else "?"
                iou = float(pairwise_iou(xyxy[None], _xyxy(dets.boxes[row : row + 1]))[0, 0]) if row >= 0 else None
                item = GalleryItem(
                    "missed",
                    image_id,
                    files[image_id],
                    _r(box),
                    gt_name,
                    float(dets.scores[row]) if row >= 0 else None,
                    det_name,
                    iou,
                    mass.get(row),
                )
            done[i] = (item, _crop(bgr, xyxy))
    tiles: dict[str, list[np.ndarray]] = {"fp": [], "missed": []}
    for i in sorted(done):
        item, crop = done[i]
        n = len(tiles[item.kind]) + 1
        if item.kind == "fp":
            caption = f"{n} {item.class_name} {item.score:.2f}"
        else:
            closest = f" ~{item.detection_class} {item.score:.2f}" if item.score is not None else ""
            caption = f"{n} {item.class_name}{closest}"
        gallery.items.append(item)
        tiles[item.kind].append(_tile(crop, caption))
    for kind, ts in tiles.items():
        if ts:
            name = f"failures_{kind}.png"
            write_png(Path(plots_dir) / name, _sheet(ts))
            gallery.figures[kind] = f"{Path(plots_dir).name}/{name}"
    return gallery


def _corners(xyxy: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    x0, y0, x1, y1 = (round(float(v)) for v in xyxy[:4])
    return (x0, y0), (x1, y1)


def _r(box: np.ndarray) -> list[float]:
    return [round(float(v), 1) for v in box]
