"""``detkit view EVAL_DIR``: look at an evaluation's failures in the FiftyOne App (the ``fiftyone`` extra).

The eval dir's split is loaded into a temporary FiftyOne dataset with two label fields:

- ``ground_truth``: each box tagged ``tp`` (found), ``fn`` (missed) or ``crowd`` (ignored by COCO rules);
- ``predictions``: each box tagged ``tp``, ``fp`` or ``ignored`` (matched a crowd box, or beyond the 100
  best of its image and class), with its ``confidence`` and the ``iou`` of its match,

using the same matcher as the calibration metrics (:func:`detkit.evaluation.matching.match_detections`,
COCO's greedy rules, per class) at IoU 0.5 by default. Every sample also gets ``tp``/``fp``/``fn`` counts so the
worst images can be sorted to the top. The App is served on localhost; on exit (Ctrl-C) the App server's
processes and the database this process started are stopped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, read_coco
from detkit.data.dataset import load_dataset
from detkit.errors import DetkitError
from detkit.evaluation.detections import DetectionTable
from detkit.evaluation.inference import image_paths
from detkit.evaluation.predictions import read_predictions
from detkit.utils.files import read_json
from detkit.utils.progress import track

DEFAULT_PORT = 5151
GT_FIELD = "ground_truth"
PRED_FIELD = "predictions"


@dataclass
class EvalContents:
    """What an eval dir points at: the split's ground truth and the evaluated detections."""

    dir: Path
    gt: CocoData
    dets: DetectionTable
    class_map: ClassMap
    images_dir: Path
    annotations: Path
    split: str


def read_eval_dir(eval_dir: str | Path) -> EvalContents:
    """Read ``metrics.json`` (which dataset and split were evaluated) and ``predictions.json`` of an eval dir."""
    d = Path(eval_dir)
    hint = "give a folder written by `detkit eval` (runs/eval/<name>/)"
    if not d.is_dir():
        raise DetkitError("eval dir not found" if not d.exists() else "is not a folder", hint=hint, path=d)
    for f in ("metrics.json", "predictions.json"):
        if not (d / f).is_file():
            raise DetkitError(f"no {f}: this is not an eval dir", hint=hint, path=d)
    meta = read_json(d / "metrics.json", what="metrics file")
    if not isinstance(meta, dict) or not isinstance(meta.get("dataset"), str) or not isinstance(meta.get("split"), str):
        raise DetkitError(
            "metrics.json does not say which dataset and split were evaluated", hint=hint, path=d / "metrics.json"
        )
    spec = load_dataset(meta["dataset"])
    split = spec.split(meta["split"])
    gt = read_coco(split.annotations)
    dets = read_predictions(d / "predictions.json", gt, spec.class_map)
    return EvalContents(d, gt, dets, spec.class_map, split.images, split.annotations, meta["split"])


def _relative_boxes(boxes_xywh: np.ndarray, sizes_wh: np.ndarray) -> np.ndarray:
    """Pixel [x, y, w, h] -> FiftyOne's [x, y, w, h] relative to the image size."""
    return boxes_xywh / np.concatenate([sizes_wh, sizes_wh], axis=1)


def _image_sizes(gt: CocoData, paths: list[Path]) -> np.ndarray:
    """(w, h) per image: from the COCO file, else read from the image header."""
    sizes = np.asarray([[im.get("width") or 0, im.get("height") or 0] for im in gt.images], dtype=np.float64).reshape(
        -1, 2
    )
    missing = np.flatnonzero((sizes <= 0).any(axis=1))
    if missing.size:
        from PIL import Image

        for i in missing.tolist():
            with Image.open(paths[i]) as im:
                sizes[i] = im.size
    return sizes


def _group(image_ids: np.ndarray, ids_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order grouping rows by image, and per image (in ``ids_sorted`` order) the start offsets (len + 1)."""
    order = np.argsort(image_ids, kind="stable")
    starts = np.searchsorted(image_ids[order], ids_sorted, side="left")
    return order, np.append(starts, len(order))


def build_fiftyone_dataset(contents: EvalContents, iou_threshold: float = 0.5, name: str | None = None) -> Any:
    """A (non-persistent) FiftyOne dataset of the eval's split with ground truth, predictions and TP/FP/FN tags."""
    from detkit.data.formats.fiftyone_io import import_fiftyone
    from detkit.evaluation.matching import match_detections

    fo = import_fiftyone()
    gt, dets, class_map = contents.gt, contents.dets, contents.class_map
    paths, ids = image_paths(gt, contents.images_dir, contents.annotations)
    sizes = _image_sizes(gt, paths)
    row_of_image = {int(i): k for k, i in enumerate(ids.tolist())}

    m = match_detections(dets, gt, iou_threshold)
    pred_tag = np.where(m.tp, "tp", np.where(m.fp, "fp", "ignored"))
    crowd = np.asarray([bool(a.get("iscrowd", 0)) for a in gt.annotations], dtype=bool)
    gt_tag = np.where(crowd, "crowd", np.where(m.gt_det_index >= 0, "tp", "fn"))
    names = dict(zip(class_map.category_ids, class_map.names))

    g_img = np.asarray([int(a["image_id"]) for a in gt.annotations], dtype=np.int64)
    g_box = gt.boxes_array()
    g_label = [names.get(int(a["category_id"]), str(a["category_id"])) for a in gt.annotations]
    d_label = [names[int(c)] for c in dets.category_ids.tolist()]
    g_img_row = np.asarray([row_of_image.get(int(i), -1) for i in g_img.tolist()], dtype=np.int64)
    d_img_row = np.asarray([row_of_image[int(i)] for i in dets.image_ids.tolist()], dtype=np.int64)
    g_rel = _relative_boxes(g_box, sizes[np.maximum(g_img_row, 0)]) if len(g_box) else g_box
    d_rel = _relative_boxes(dets.boxes, sizes[d_img_row]) if len(dets) else dets.boxes

    rows = np.arange(len(ids))
    g_order, g_starts = _group(g_img_row, rows)
    d_order, d_starts = _group(d_img_row, rows)
    samples = []
    for k in track(range(len(ids)), "building FiftyOne samples"):
        g_rows = g_order[g_starts[k] : g_starts[k + 1]].tolist()
        d_rows = d_order[d_starts[k] : d_starts[k + 1]].tolist()
        truth = [
            fo.Detection(
                label=g_label[r],
                bounding_box=g_rel[r].tolist(),
                tags=[str(gt_tag[r])],
                iscrowd=int(crowd[r]),
                eval=str(gt_tag[r]),
            )
            for r in g_rows
        ]
        preds = [
            fo.Detection(
                label=d_label[r],
                bounding_box=d_rel[r].tolist(),
                confidence=float(dets.scores[r]),
                tags=[str(pred_tag[r])],
                eval=str(pred_tag[r]),
                iou=float(m.iou[r]),
            )
            for r in d_rows
        ]
        sample = fo.Sample(filepath=str(paths[k]), tags=[contents.split])
        sample[GT_FIELD] = fo.Detections(detections=truth)
        sample[PRED_FIELD] = fo.Detections(detections=preds)
        sample["coco_id"] = int(ids[k])
        sample["tp"] = int(np.count_nonzero(pred_tag[d_rows] == "tp")) if d_rows else 0
        sample["fp"] = int(np.count_nonzero(pred_tag[d_rows] == "fp")) if d_rows else 0
        sample["fn"] = int(np.count_nonzero(gt_tag[g_rows] == "fn")) if g_rows else 0
        samples.append(sample)

    ds_name = name or f"detkit-eval-{contents.dir.name}-{os.getpid()}"
    if fo.dataset_exists(ds_name):
        fo.delete_dataset(ds_name)
    dataset = fo.Dataset(ds_name)
    dataset.persistent = False
    dataset.default_classes = list(class_map.names)
    dataset.info = {
        "eval_dir": str(contents.dir),
        "split": contents.split,
        "iou_threshold": float(iou_threshold),
        "tags": "tp / fp / fn per box (COCO greedy matching per class); 'ignored' and 'crowd' follow COCO's crowd rule",
    }
    dataset.add_samples(samples)
    return dataset


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _stop_processes(procs: list[Any], timeout: float = 10.0) -> None:
    import psutil

    alive = [p for p in procs if p.is_running()]
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, still = psutil.wait_procs(alive, timeout=timeout)
    for p in still:
        with contextlib.suppress(psutil.Error):
            p.kill()


@contextlib.contextmanager
def app_session(dataset: Any, port: int = DEFAULT_PORT, open_browser: bool = True) -> Iterator[Any]:
    """Serve ``dataset`` in the FiftyOne App on localhost; on leaving, stop the App server's whole process tree
    (FiftyOne's service wrapper and the server it spawned) and the database this process started."""
    from detkit.data.formats.fiftyone_io import import_fiftyone, shutdown_database

    fo = import_fiftyone()
    import fiftyone.core.session.session as fos_session

    session = None
    server_procs: list[Any] = []
    try:
        session = fo.launch_app(dataset, port=port, address="127.0.0.1", remote=not open_browser)
        service = fos_session._server_services.get(session.server_port)
        child = getattr(service, "child", None)
        if child is not None:
            import psutil

            server_procs = [psutil.Process(child.pid), *_descendants(child.pid)]
        yield session
    finally:
        if session is not None:
            with contextlib.suppress(Exception):
                session.close()
        _stop_processes(server_procs)
        with contextlib.suppress(Exception):
            dataset.delete()
        shutdown_database()


def serve_eval(
    eval_dir: str | Path,
    port: int = DEFAULT_PORT,
    open_browser: bool = True,
    iou_threshold: float = 0.5,
    on_ready: Any = None,
) -> None:
    """Build the FiftyOne dataset of an eval dir and serve it until Ctrl-C; ``on_ready(url, dataset)`` is called
    once the App is up."""
    if not 1 <= int(port) <= 65535:
        raise DetkitError(f"port must be in 1..65535, got {port}")
    contents = read_eval_dir(eval_dir)
    with _terminate_as_interrupt():
        dataset = build_fiftyone_dataset(contents, iou_threshold)
        with app_session(dataset, port=port, open_browser=open_browser) as session:
            if on_ready is not None:
                on_ready(f"http://127.0.0.1:{session.server_port}", dataset)
            with contextlib.suppress(KeyboardInterrupt):
                session.wait(-1)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a supervisor, ``kill``) and SIGINT take the same clean-shutdown path as Ctrl-C."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
