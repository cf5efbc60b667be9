"""``predict``: run a detector (PyTorch checkpoint or exported ONNX) over images, folders and videos.

Writes, into one output folder (assembled in a temporary folder and renamed when complete):

- ``predictions.jsonl``: one line per image or video frame:
  ``{"source", "frame" (null for images), "width", "height", "detections": [{"category_id", "class", "score",
  "bbox" (COCO [x, y, w, h] original pixels)}]}``, with original dataset category ids;
- annotated copies (``<name>.jpg`` for images, ``<name>.mp4`` for videos) with boxes, class names and scores.

Which detections are kept: ``conf`` when given (score > conf, on calibrated scores when a calibrator is in
use); otherwise the calibrator's operating point (raw score >= its pre-threshold and calibrated score >= its
threshold, per class; recorded in ``model.json`` for exported models) when there is one; otherwise
``DEFAULT_CONF``. A calibrator comes from ``calibrator=`` or is embedded in the ONNX graph, which keeps every
detection (calibrated) unless it was exported with ``drop_below_threshold`` (then its score-0 detections are
the dropped ones and are never kept).

Unreadable images or videos are reported in ``skipped`` and the rest is processed; only when nothing at all
could be processed is it an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detkit.errors import DetkitError
from detkit.slicing import DEFAULT_OVERLAP, check_fits, check_slicing, sliced, slicing_source
from detkit.utils.atomic import atomic_dir
from detkit.utils.draw import draw_boxes
from detkit.utils.progress import ProgressTask, track
from detkit.utils.run_dirs import next_run_dir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
DEFAULT_CONF = 0.5
DEFAULT_OUT = Path("runs/predict")


@dataclass
class PredictResult:
    out_dir: Path
    predictions_path: Path
    backend: str
    selection: str
    images: int = 0
    videos: int = 0
    frames: int = 0
    detections: int = 0
    outputs: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "predictions": str(self.predictions_path),
            "backend": self.backend,
            "selection": self.selection,
            "images": self.images,
            "videos": self.videos,
            "frames": self.frames,
            "detections": self.detections,
            "outputs": self.outputs,
            "skipped": self.skipped,
        }


# ---------------------------------------------------------------------------------------------------------------------
# model and operating point


def load_predictor(
    model: Any,
    device: str | None = None,
    threads: int | None = None,
    batch_size: int = 8,
    weights: Any = None,
    class_map: Any = None,
    backend: str | None = None,
) -> tuple[Any, str]:
    """A ready detector and its backend name, from any source ``detkit.inference.open_detector`` takes."""
    from detkit.inference import open_detector

    det = open_detector(
        model,
        weights=weights,
        device=device,
        class_map=class_map,
        threads=threads,
        batch_size=batch_size,
        backend=backend,
    )
    return det, getattr(det, "backend", "torch")


class Selector:
    """Turns a model's top-k output into the detections to keep (calibration, then thresholds)."""

    def __init__(self, predictor: Any, calibrator: Any = None, conf: float | None = None):
        embedded = getattr(predictor, "calibrator", None)
        if calibrator is not None and embedded is not None:
            raise DetkitError(
                "the ONNX model already embeds a calibrator; calibrator would calibrate twice",
                hint="leave calibrator out (the embedded one is used), or export without one",
                params="calibrator",
            )
        if calibrator is not None and not hasattr(calibrator, "method"):
            from detkit.calibration import load_calibrator

            calibrator = load_calibrator(calibrator, class_map=predictor.class_map)
        elif calibrator is not None:
            calibrator.class_map.check_same(
                predictor.class_map, "the calibrator", "the model", hint="use a calibrator fitted for this model"
            )
        self.apply_calibrator = calibrator  # applied here (the graph did not)
        self.calibrator = calibrator or embedded
        self.conf = conf
        has_thresholds = self.calibrator is not None and (
            self.calibrator.thresholds is not None or self.calibrator.pre_thresholds is not None
        )
        self.use_thresholds = conf is None and has_thresholds
        op = (getattr(predictor, "metadata", None) or {}).get("operating_point") or {}
        self.dropped_in_graph = bool(op.get("applied_in_graph"))
        if self.use_thresholds:
            self.description = "calibrator per-class thresholds" + (
                " (applied in the graph)" if self.dropped_in_graph else ""
            )
        else:
            self.description = f"score > {conf if conf is not None else DEFAULT_CONF}" + (
                " (calibrated)" if self.calibrator is not None else ""
            )

    def __call__(self, labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray, raw: np.ndarray):
        if self.apply_calibrator is not None:
            from detkit.calibration.apply import calibrate_scores

            raw = scores
            scores = calibrate_scores(self.apply_calibrator, scores, labels).astype(np.float32)
        if self.use_thresholds:
            from detkit.calibration.apply import keep_mask

            keep = keep_mask(self.calibrator, raw, scores, labels)
        else:
            keep = scores > (self.conf if self.conf is not None else DEFAULT_CONF)
        if self.dropped_in_graph:
            keep &= scores > 0
        return labels[keep], boxes[keep], scores[keep]


def top_k_outputs(
    predictor: Any, images: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(labels, boxes, scores, raw scores) per image, unfiltered, from either backend."""
    if hasattr(predictor, "infer"):
        return predictor.infer(images)
    dets = predictor.predict(list(images), conf=-1.0)
    return [
        (
            np.asarray(d.labels),
            np.asarray(d.boxes, np.float32),
            np.asarray(d.scores, np.float32),
            np.asarray(d.scores, np.float32),
        )
        for d in dets
    ]


# ---------------------------------------------------------------------------------------------------------------------
# sources


def collect_sources(sources: Sequence[str | Path]) -> tuple[list[tuple[Path, str]], list[dict[str, str]]]:
    """Expand files and folders into (path, 'image'|'video') items; anything unusable goes to ``skipped``."""
    items: list[tuple[Path, str]] = []
    skipped: list[dict[str, str]] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            found = [(f, _kind(f)) for f in files if _kind(f)]
            if not found:
                skipped.append({"source": str(p), "reason": "folder holds no image or video files"})
            items.extend(found)  # type: ignore[arg-type]
        elif p.is_file():
            kind = _kind(p)
            if kind is None:
                skipped.append({"source": str(p), "reason": f"unsupported file type {p.suffix or '(none)'}"})
            else:
                items.append((p, kind))
        else:
            skipped.append({"source": str(p), "reason": "not found"})
    return items, skipped


def _kind(path: Path) -> str | None:
    s = path.suffix.lower()
    return "image" if s in IMAGE_SUFFIXES else "video" if s in VIDEO_SUFFIXES else None


# ---------------------------------------------------------------------------------------------------------------------
# the run


def predict(
    model: Any,
    sources: Sequence[str | Path],
    out: str | Path | None = None,
    conf: float | None = None,
    calibrator: Any = None,
    batch_size: int = 4,
    device: str | None = None,
    threads: int | None = None,
    save_media: bool = True,
    overwrite: bool = False,
    weights: Any = None,
    class_map: Any = None,
    slice_hw: Sequence[int] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    backend: str | None = None,
) -> PredictResult:
    """Detect objects in ``sources`` (image files, folders, videos) and write the results under ``out``.

    ``out`` is the output folder (default: a new ``runs/predict/predict<N>``). ``model`` is any source
    ``detkit.inference.open_detector`` takes (``weights`` with ``recipe:NAME``; ``class_map`` a ClassMap,
    dataset.yaml or names file naming foreign weights' classes). Returns what was written and what was skipped
    (with reasons). ``slice_hw`` (tile height, width) turns on sliced inference with tiles overlapping by the
    fraction ``overlap`` (:mod:`detkit.slicing`); every image must be at least one tile large. ``backend``
    (onnxruntime or openvino) runs an exported ``.onnx`` model in that runtime (default onnxruntime).
    """
    if slice_hw is not None:
        slice_hw, overlap = check_slicing(slice_hw, overlap)
    if conf is not None and not 0.0 <= conf < 1.0:
        raise DetkitError(f"conf must be in [0, 1), got {conf}", params="conf")
    if batch_size < 1:
        raise DetkitError(f"batch_size must be >= 1, got {batch_size}", params="batch_size")
    items, skipped = collect_sources(sources)
    if not items:
        raise DetkitError(
            _nothing_message(skipped),
            hint="pass image files (.jpg, .png, ...), videos (.mp4, ...) or folders holding them",
        )
    predictor, backend = load_predictor(
        model,
        device=device,
        threads=threads,
        batch_size=batch_size,
        weights=weights,
        class_map=class_map,
        backend=backend,
    )
    predictor = sliced(predictor, slice_hw, overlap)
    select = Selector(predictor, calibrator=calibrator, conf=conf)
    out_dir = Path(out) if out is not None else next_run_dir(DEFAULT_OUT, "predict")
    result = PredictResult(
        out_dir=out_dir,
        predictions_path=out_dir / "predictions.jsonl",
        backend=backend,
        selection=select.description,
        skipped=skipped,
    )
    names = predictor.class_map.names
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        writer = _Outputs(tmp, save_media)
        with open(tmp / "predictions.jsonl", "w", encoding="utf-8") as jsonl:
            images = [p for p, k in items if k == "image"]
            for chunk in _chunks(images, batch_size):
                loaded = _load_images(chunk, result.skipped)
                if not loaded:
                    continue
                if slice_hw is not None:
                    for path, img in loaded:
                        check_fits(slice_hw, img.shape[:2], path)
                outputs = top_k_outputs(predictor, [im for _, im in loaded])
                for (path, img), raw in zip(loaded, outputs):
                    labels, boxes, scores = select(*raw)
                    _write_line(jsonl, str(path), None, img, labels, boxes, scores, predictor.class_map)
                    writer.image(
                        path, draw_boxes(img, boxes, labels, names, scores, to_bgr=True) if save_media else None
                    )
                    result.images += 1
                    result.detections += len(labels)
            for path in [p for p, k in items if k == "video"]:
                with slicing_source(path):
                    frames = _predict_video(path, predictor, select, batch_size, jsonl, writer, result)
                if frames:
                    result.videos += 1
                    result.frames += frames
        if result.images + result.frames == 0:
            raise DetkitError(
                _nothing_message(result.skipped), hint="check that the files are readable images or videos"
            )
        result.outputs = [str(out_dir / name) for name in writer.names]
    return result


def _nothing_message(skipped: list[dict[str, str]]) -> str:
    shown = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:3])
    more = f" (+{len(skipped) - 3} more)" if len(skipped) > 3 else ""
    return f"nothing could be processed: {shown}{more}" if skipped else "nothing could be processed: no sources given"


def _chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for start in track(range(0, len(seq), n), "images", total=(len(seq) + n - 1) // n):
        yield seq[start : start + n]


def _load_images(paths: Sequence[Path], skipped: list[dict[str, str]]) -> list[tuple[Path, np.ndarray]]:
    from detkit.data.images import load_image

    loaded = []
    for p in paths:
        try:
            loaded.append((p, load_image(p)))
        except DetkitError as e:
            skipped.append({"source": str(p), "reason": e.message.removeprefix(f"{p}: ")})
    return loaded


def _write_line(f, source: str, frame: int | None, img: np.ndarray, labels, boxes, scores, class_map) -> None:
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1) if len(boxes) else np.zeros((0, 4))
    cids = class_map.labels_to_category_ids(labels)
    dets = [
        {
            "category_id": int(c),
            "class": class_map.names[int(lab)],
            "score": round(float(s), 6),
            "bbox": [round(float(v), 2) for v in b],
        }
        for c, lab, s, b in zip(cids.tolist(), labels.tolist(), scores.tolist(), xywh.tolist())
    ]
    f.write(
        json.dumps(
            {
                "source": source,
                "frame": frame,
                "width": int(img.shape[1]),
                "height": int(img.shape[0]),
                "detections": dets,
            }
        )
        + "\n"
    )


class _Outputs:
    """Annotated files inside the (temporary) output folder, with unique names."""

    def __init__(self, root: Path, enabled: bool):
        self.root, self.enabled, self.names = root, enabled, ["predictions.jsonl"]

    def unique(self, stem: str, suffix: str) -> Path:
        name, n = f"{stem}{suffix}", 1
        while name in self.names:
            n += 1
            name = f"{stem}_{n}{suffix}"
        self.names.append(name)
        return self.root / name

    def image(self, source: Path, bgr: np.ndarray | None) -> None:
        import cv2

        if self.enabled and bgr is not None:
            cv2.imwrite(str(self.unique(source.stem, ".jpg")), bgr)


def _predict_video(
    path: Path, predictor, select: Selector, batch_size: int, jsonl, writer: _Outputs, result: PredictResult
) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        result.skipped.append({"source": str(path), "reason": "cannot open video (unreadable or unsupported codec)"})
        return 0
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    task = ProgressTask(f"video {path.name}", total=total)
    video_writer, out_path, frame_idx = None, None, 0
    try:
        while True:
            batch = []
            while len(batch) < batch_size:
                ok, frame = cap.read()
                if not ok:
                    break
                batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if not batch:
                break
            for img, raw in zip(batch, top_k_outputs(predictor, batch)):
                labels, boxes, scores = select(*raw)
                _write_line(jsonl, str(path), frame_idx, img, labels, boxes, scores, predictor.class_map)
                result.detections += len(labels)
                if writer.enabled:
                    if video_writer is None:
                        out_path = writer.unique(path.stem, ".mp4")
                        video_writer = cv2.VideoWriter(
                            str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0])
                        )
                    video_writer.write(draw_boxes(img, boxes, labels, predictor.class_map.names, scores, to_bgr=True))
                frame_idx += 1
            task.advance(len(batch))
    finally:
        cap.release()
        task.close()
        if video_writer is not None:
            video_writer.release()
    if frame_idx == 0:
        result.skipped.append({"source": str(path), "reason": "no decodable frames (corrupt or empty video)"})
        if out_path is not None and out_path.exists():
            out_path.unlink()
    return frame_idx
