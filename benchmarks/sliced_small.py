"""Sliced vs plain inference of one model on the small-object synthetic set, measured in one run.

The same model and the same images go through (1) the plain full-image pass, (2) sliced inference merged with
class-wise NMS and (3) sliced inference merged with weighted box fusion (:mod:`detkit.slicing`); the tiles are
detected once and their raw outputs replayed for the second merge, so (2) and (3) differ only in the merge. A
fourth row shows NMS without dropping the boxes cut by tile borders. Prints COCO AP, AP50, AP_small, AR100 and
seconds per image side by side.

    python benchmarks/sliced_small.py --model /path/to/run_or_checkpoint [--data DIR] [--images 8]
        [--slice 128 128] [--overlap 0.25]

``--data`` defaults to ``runs/bench/small_shapes``, written with ``detkit data synth --small`` when missing (the
same shape classes as the standard synthetic data, so a model trained on that, e.g. the quickstart's, applies).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from detkit.api import load_model
from detkit.data.coco import CocoData, read_coco
from detkit.data.dataset import load_dataset
from detkit.evaluation.coco_metrics import evaluate_coco
from detkit.evaluation.inference import predict_split
from detkit.slicing import DEFAULT_EDGE_PX, DEFAULT_IOU, SlicedDetector


class Replay:
    """Runs the detector on the first pass and hands back the same outputs, call by call, afterwards."""

    def __init__(self, detector):
        self.detector, self.calls, self.replaying, self.n = detector, [], False, 0
        self.class_map, self.imgsz = detector.class_map, detector.imgsz

    def predict(self, images, conf=0.0):
        if not self.replaying:
            self.calls.append(self.detector.predict(images, conf=conf))
            return self.calls[-1]
        self.n += 1
        return self.calls[self.n - 1]

    def replay(self):
        self.replaying, self.n = True, 0
        return self


def subset(coco: CocoData, n: int) -> CocoData:
    images = coco.images[:n]
    ids = {im["id"] for im in images}
    return CocoData(images, [a for a in coco.annotations if a["image_id"] in ids], coco.categories, coco.info)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="run dir, checkpoint or model.onnx trained on the shape classes")
    ap.add_argument("--data", type=Path, default=Path("runs/bench/small_shapes"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--images", type=int, default=8, help="first N images of the split")
    ap.add_argument("--slice", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=DEFAULT_IOU)
    ap.add_argument("--edge-px", type=float, default=DEFAULT_EDGE_PX, help="cut-box margin (see detkit.slicing)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    if not (args.data / "dataset.yaml").is_file():
        from detkit.data.synth import generate_synthetic

        generate_synthetic(args.data, train=0, val=0, calib=0, test=max(args.images, 8), small=True, seed=0)
    spec = load_dataset(args.data)
    split = spec.split(args.split)
    gt = subset(read_coco(split.annotations), args.images)
    det = load_model(args.model)
    det.batch_size = args.batch
    n_gt = len(gt.annotations)
    print(
        f"model {args.model} (input {det.imgsz[0]}×{det.imgsz[1]}); {len(gt.images)} images of {args.data} "
        f"({gt.images[0]['height']}×{gt.images[0]['width']}), {n_gt} objects; "
        f"slices {args.slice[0]}×{args.slice[1]}, overlap {args.overlap}"
    )

    rows = []

    def run(name, detector):
        start = time.perf_counter()
        dets = predict_split(detector, (gt, split.images), batch_size=1)
        seconds = (time.perf_counter() - start) / len(gt.images)
        m = evaluate_coco(gt, dets, spec.class_map)
        rows.append((name, m["AP"], m["AP50"], m["APs"], m["AR100"], seconds))

    run("plain (full image)", det)
    replay = Replay(det)
    kw = {"iou": args.iou, "edge_px": args.edge_px}
    run("sliced + NMS", SlicedDetector(replay, args.slice, args.overlap, merge="nms", **kw))
    run("sliced + WBF", SlicedDetector(replay.replay(), args.slice, args.overlap, merge="wbf", **kw))
    run(
        "sliced + NMS, cut boxes kept",
        SlicedDetector(replay.replay(), args.slice, args.overlap, merge="nms", iou=args.iou, edge_px=-np.inf),
    )
    rows[2] = (*rows[2][:5], rows[1][5])  # the replayed rows did not run the model: report the measured time
    rows[3] = (*rows[3][:5], rows[1][5])

    head = f"{'inference':<30} {'AP':>6} {'AP50':>6} {'AP_s':>6} {'AR100':>6} {'s/img':>7}"
    print(head)
    print("-" * len(head))
    for name, a, a50, aps, ar, s in rows:
        print(f"{name:<30} {100 * a:6.1f} {100 * a50:6.1f} {100 * (aps or 0):6.1f} {100 * ar:6.1f} {s:7.2f}")


if __name__ == "__main__":
    main()
