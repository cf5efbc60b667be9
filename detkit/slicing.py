"""Sliced inference: detect small objects on tiles at the model's size, then merge with the full-image pass.

A detector that resizes a whole 1024 px image to its 256 px input shrinks an 8 px object to 2 px, below what it
can see. :class:`SlicedDetector` cuts each image into overlapping tiles of ``slice_hw`` pixels, lets the wrapped
detector run on every tile (each tile is resized to the model size, so small objects are seen enlarged), maps the
tile boxes back by adding the tile's offset, adds the boxes of the usual full-image pass (large objects), and
merges the union per class:

- ``"nms"``: class-wise non-maximum suppression (``torchvision.ops.batched_nms``);
- ``"wbf"`` (default, higher AP on the small-object set): weighted box fusion: the clusters are the NMS
  clusters (each suppressed box joins the kept box of its class it overlaps most), the fused box is the
  score-weighted mean of its cluster, its score the cluster's best.

Before merging, a tile box that ends within ``edge_px`` pixels of a tile side lying inside the image is dropped:
it is an object cut by the tile border, which a neighbouring tile (objects up to the overlap in size) or the
full-image pass (larger ones) sees whole. Everything after the per-tile forward passes works on whole arrays.

The wrapped detector is any object with ``predict(images, conf) -> [Detections]`` (xyxy pixel ``boxes``,
``scores``, ``labels``, ``category_ids``), ``class_map`` and ``imgsz``; when it also has ``infer(images)``
(top-k ``(labels, boxes, scores, raw_scores)`` per image, as the ONNX runtime detector has) the raw scores are
carried through the merge.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from detkit.errors import DetkitError

MERGES = ("nms", "wbf")
DEFAULT_OVERLAP = 0.2
DEFAULT_IOU = 0.5
DEFAULT_MERGE = "wbf"  # measured on the --small set: WBF 12.0 AP vs NMS 10.8 (docs/slicing.md)
DEFAULT_EDGE_PX = 2.0
MAX_DET = 300  # boxes kept per image after merging (the model's own top-k)
PRE_MERGE_FACTOR = 8  # at most PRE_MERGE_FACTOR * max_det best-scoring boxes enter the merge

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # labels, boxes xyxy, scores, raw scores


class SlicingError(DetkitError):
    """A bad slicing setting; ``param`` names the library parameter (``slice_hw`` or ``overlap``)."""

    def __init__(self, message: str, param: str, hint: str | None = None, path: Any = None):
        super().__init__(message, hint=hint, path=path)
        self.param = param


def check_slicing(slice_hw: Any, overlap: Any) -> tuple[tuple[int, int], float]:
    """``(slice_hw, overlap)`` validated: two positive integer sizes, an overlap fraction in [0, 1)."""
    try:
        h, w = (int(v) for v in slice_hw)
        ok = not isinstance(slice_hw, (str, bytes)) and all(float(v) == int(v) for v in slice_hw)
    except (TypeError, ValueError):
        ok = False
    if not ok or h <= 0 or w <= 0:
        raise SlicingError(
            f"slice_hw must be two positive integers (tile height, width) in pixels, got {slice_hw!r}", "slice_hw"
        )
    try:
        f = float(overlap)
    except (TypeError, ValueError):
        f = float("nan")
    if not 0.0 <= f < 1.0:
        raise SlicingError(f"overlap must be a fraction in [0, 1), got {overlap!r}", "overlap")
    return (h, w), f


def check_fits(slice_hw: tuple[int, int], image_hw: tuple[int, int], path: Any = None) -> None:
    """Refuse tiles larger than the image (there is nothing to slice; the full-image pass alone covers it)."""
    if slice_hw[0] > image_hw[0] or slice_hw[1] > image_hw[1]:
        raise SlicingError(
            f"slice_hw {slice_hw[0]}×{slice_hw[1]} is larger than the image ({image_hw[0]}×{image_hw[1]})",
            "slice_hw",
            hint=f"use tiles of at most {image_hw[0]}×{image_hw[1]}, or no slicing for images this small",
            path=path,
        )


def check_split_fits(slice_hw: tuple[int, int], images: Sequence[dict[str, Any]], source: Any = None) -> None:
    """:func:`check_fits` for every image of a COCO split (``width``/``height`` entries), before any inference."""
    if not images:
        return
    hw = np.asarray([[im.get("height", 0), im.get("width", 0)] for im in images], dtype=np.int64)
    small = np.flatnonzero((hw < np.asarray(slice_hw)).any(axis=1))
    if len(small):
        more = f" (and {len(small) - 1} more images)" if len(small) > 1 else ""
        i = int(small[0])
        raise SlicingError(
            f"slice_hw {slice_hw[0]}×{slice_hw[1]} is larger than image {images[i].get('file_name')!s} "
            f"({hw[i, 0]}×{hw[i, 1]}){more}",
            "slice_hw",
            hint=f"use tiles of at most {hw[:, 0].min()}×{hw[:, 1].min()} for this split, or no slicing",
            path=source,
        )


@contextmanager
def slicing_source(path: Any) -> Iterator[None]:
    """Name ``path`` in a :class:`SlicingError` raised inside (e.g. while the frames of a video are sliced)."""
    try:
        yield
    except SlicingError as e:
        raise SlicingError(e.message, e.param, hint=e.hint, path=path) from None


def _starts(size: int, tile: int, overlap: float) -> np.ndarray:
    """Tile starts along one axis: a stride of ``tile * (1 - overlap)``, the last tile flush with the far edge."""
    stride = max(1, int(tile * (1.0 - overlap)))
    n = -(-(size - tile) // stride) + 1  # ceil
    return np.minimum(np.arange(n, dtype=np.int64) * stride, size - tile)


def tile_grid(image_hw: tuple[int, int], slice_hw: tuple[int, int], overlap: float) -> np.ndarray:
    """Tiles covering an image of ``image_hw``: int64 ``[T, 4]`` xyxy pixel windows, row-major."""
    check_fits(slice_hw, image_hw)
    ys = _starts(image_hw[0], slice_hw[0], overlap)
    xs = _starts(image_hw[1], slice_hw[1], overlap)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    x0, y0 = x0.reshape(-1), y0.reshape(-1)
    return np.stack([x0, y0, x0 + slice_hw[1], y0 + slice_hw[0]], axis=1)


def cut_by_tile(boxes: np.ndarray, windows: np.ndarray, image_hw: Any, edge_px: float) -> np.ndarray:
    """Which boxes (image pixels, xyxy ``[N, 4]``) end within ``edge_px`` of a side of their window (``[N, 4]``)
    that lies inside the image; ``image_hw`` is ``(h, w)`` or one ``(h, w)`` row per box."""
    wh = np.asarray(image_hw, dtype=np.float32).reshape(-1, 2)[:, ::-1]
    inner = np.concatenate([windows[:, :2] > 0, windows[:, 2:] < wh], axis=1)
    near = np.concatenate([boxes[:, :2] - windows[:, :2] <= edge_px, windows[:, 2:] - boxes[:, 2:] <= edge_px], axis=1)
    return (inner & near).any(axis=1)


def merge_boxes(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    iou: float = DEFAULT_IOU,
    method: str = DEFAULT_MERGE,
    max_det: int = MAX_DET,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge overlapping same-class boxes: ``(index of each kept box, its box)`` by descending score.

    With ``"nms"`` the box is the kept one; with ``"wbf"`` the score-weighted mean of its cluster (the kept box
    plus every box it suppressed, each box joining the kept box of its class it overlaps most).
    """
    if method not in MERGES:
        raise DetkitError(f"merge must be one of {', '.join(MERGES)}, got {method!r}")
    if len(boxes) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    import torch
    from torchvision.ops import batched_nms, box_iou

    b = torch.as_tensor(boxes, dtype=torch.float32)
    s = torch.as_tensor(scores, dtype=torch.float32)
    lab = torch.as_tensor(labels, dtype=torch.int64)
    keep = batched_nms(b, s, lab, iou)[:max_det]
    if method == "nms":
        return keep.numpy(), b[keep].numpy()
    overlap = box_iou(b, b[keep]).masked_fill_(lab[:, None] != lab[keep][None, :], -1.0)
    best, owner = overlap.max(dim=1)
    member = best > iou
    member[keep] = True  # a kept box belongs to its own cluster (also when degenerate)
    owner[keep] = torch.arange(len(keep))
    w = s[member].clamp_min(1e-12)  # a cluster of zero scores still averages its boxes
    total = torch.zeros(len(keep)).index_add_(0, owner[member], w)
    fused = torch.zeros(len(keep), 4).index_add_(0, owner[member], b[member] * w[:, None]) / total[:, None]
    return keep.numpy(), fused.numpy()


class SlicedDetector:
    """Any detector, run on overlapping tiles plus the full image, with the results merged (see module doc)."""

    def __init__(
        self,
        detector: Any,
        slice_hw: Sequence[int],
        overlap: float = DEFAULT_OVERLAP,
        merge: str = DEFAULT_MERGE,
        iou: float = DEFAULT_IOU,
        edge_px: float = DEFAULT_EDGE_PX,
        max_det: int = MAX_DET,
    ):
        self.slice_hw, self.overlap = check_slicing(slice_hw, overlap)
        if merge not in MERGES:
            raise DetkitError(f"merge must be one of {', '.join(MERGES)}, got {merge!r}")
        if not 0.0 < iou <= 1.0:
            raise DetkitError(f"iou must be in (0, 1], got {iou!r}")
        self.detector, self.merge, self.iou = detector, merge, float(iou)
        self.edge_px, self.max_det = float(edge_px), int(max_det)

    # what callers read from a detector
    @property
    def class_map(self):
        return self.detector.class_map

    @property
    def imgsz(self):
        return self.detector.imgsz

    @property
    def calibrator(self):
        return getattr(self.detector, "calibrator", None)

    @property
    def device(self):
        return getattr(self.detector, "device", None)

    def describe(self) -> dict[str, Any]:
        """The settings, as recorded in artifacts."""
        return {
            "slice_hw": list(self.slice_hw),
            "overlap": self.overlap,
            "merge": self.merge,
            "iou": self.iou,
            "edge_px": self.edge_px,
            "full_image": True,
        }

    def __repr__(self) -> str:
        return (
            f"SlicedDetector({self.detector!r}, slice_hw={self.slice_hw}, overlap={self.overlap}, merge={self.merge!r})"
        )

    def _crop_outputs(self, crops: list[np.ndarray]) -> list[Outputs]:
        if hasattr(self.detector, "infer"):
            return list(self.detector.infer(crops))
        dets = self.detector.predict(crops, conf=-1.0)
        return [
            (
                np.asarray(d.labels, np.int64),
                np.asarray(d.boxes, np.float32),
                np.asarray(d.scores, np.float32),
                np.asarray(d.scores, np.float32),
            )
            for d in dets
        ]

    def infer(self, images: Sequence[Any]) -> list[Outputs]:
        """Merged ``(labels, boxes xyxy px, scores, raw scores)`` per image, nothing filtered by score."""
        return self._run(images, conf=None)

    def _run(self, images: Sequence[Any], conf: float | None) -> list[Outputs]:
        from detkit.data.images import as_image

        arrays = [as_image(im, i) for i, im in enumerate(images)]
        crops, windows, owners = [], [], []
        for i, img in enumerate(arrays):
            hw = img.shape[:2]
            tiles = tile_grid(hw, self.slice_hw, self.overlap)
            crops.append(img)  # the full-image pass
            crops.extend(img[y0:y1, x0:x1] for x0, y0, x1, y1 in tiles.tolist())
            windows.append(np.concatenate([[[0, 0, hw[1], hw[0]]], tiles]))
            owners.append(np.full(len(tiles) + 1, i))
        outs = self._crop_outputs(crops)
        win, own = np.concatenate(windows), np.concatenate(owners)
        counts = np.asarray([len(o[2]) for o in outs])
        crop_of = np.repeat(np.arange(len(outs)), counts)
        labels = np.concatenate([o[0] for o in outs]).astype(np.int64)
        boxes = np.concatenate([o[1] for o in outs]).astype(np.float32).reshape(-1, 4) + np.tile(win[crop_of, :2], 2)
        scores = np.concatenate([o[2] for o in outs]).astype(np.float32)
        raw = np.concatenate([o[3] for o in outs]).astype(np.float32)
        image_of = own[crop_of]
        sizes = np.asarray([a.shape[:2] for a in arrays]).reshape(-1, 2)
        keep = ~cut_by_tile(boxes, win[crop_of].astype(np.float32), sizes[image_of], self.edge_px)
        if conf is not None:
            keep &= scores >= conf
        results = []
        for i in range(len(arrays)):
            sel = np.flatnonzero(keep & (image_of == i))
            sel = sel[np.argsort(-scores[sel], kind="stable")[: PRE_MERGE_FACTOR * self.max_det]]
            idx, fused = merge_boxes(boxes[sel], scores[sel], labels[sel], self.iou, self.merge, self.max_det)
            pick = sel[idx]
            results.append((labels[pick], fused.astype(np.float32), scores[pick], raw[pick]))
        return results

    def predict(self, images: Any, conf: float = 0.0) -> list:
        """Per image ``Detections`` (xyxy pixels, scores, labels, category ids), scores above ``conf``."""
        from detkit.inference.types import Detections

        if isinstance(images, (str, np.ndarray)) or hasattr(images, "__fspath__"):
            images = [images]
        return [
            Detections(boxes=b, scores=s, labels=lab, category_ids=self.class_map.labels_to_category_ids(lab))
            for lab, b, s, _ in self._run(list(images), conf)
        ]

    def predict_table(self, images: Sequence[Any], image_ids: Sequence[int], conf: float = 0.0):
        """All detections of ``images`` as one :class:`~detkit.evaluation.detections.DetectionTable`."""
        from detkit.evaluation.detections import DetectionTable

        if len(images) != len(image_ids):
            raise DetkitError(f"{len(images)} images but {len(image_ids)} image ids")
        return DetectionTable.concat(
            DetectionTable.from_xyxy(int(i), d.boxes, d.scores.astype(np.float64), d.category_ids)
            for i, d in zip(image_ids, self.predict(images, conf=conf))
        )


def sliced(detector: Any, slice_hw: Sequence[int] | None, overlap: float = DEFAULT_OVERLAP, **kwargs: Any) -> Any:
    """``detector`` itself when ``slice_hw`` is None, else a :class:`SlicedDetector` around it."""
    return detector if slice_hw is None else SlicedDetector(detector, slice_hw, overlap, **kwargs)
