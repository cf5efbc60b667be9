"""onnxruntime (and OpenVINO) fp32 and INT8 vs PyTorch eager latency of RT-DETR-R18 at 640, side by side in one run.

    python benchmarks/onnx_vs_torch.py [--batch 1,4] [--threads 2] [--iters 10] [--imgsz 640] [--no-int8]
                                       [--calib-images 16] [--float-groups decoder.layers.0,...] [--no-openvino]

Random initialisation (speed does not depend on the weights); 80 COCO classes, 300 queries, 3 decoder layers as
the recipe says. The model is exported with detkit's own export (verified for parity first); the INT8 file is the
fp32 graph quantized by ``detkit.export.targets.int8.quantize_onnx`` (QDQ, per-channel weights) calibrated on synthetic
scenes rendered at the model size. A random model has no AP to measure, so there is no sensitivity pass here:
every group of the default op types is quantized except ``--float-groups`` (pass the groups a real export kept in float,
see its model.json, to time that file's layout). All rows of one (threads, batch) pair are timed interleaved, one
iteration each in turn, so other jobs on a shared CPU load every row alike; the load average is printed with the
table. With the openvino extra installed, OpenVINO runs the same fp32 and INT8 files (f32 precision hint) in the
same interleaved loop. Goals: onnxruntime fp32 total latency <= 0.6x PyTorch eager; INT8 <= 0.5x onnxruntime fp32.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipe:rtdetr-r18")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", default="1")
    parser.add_argument("--threads", default=str(min(os.cpu_count() or 1, 16)))
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="leave the INT8 row out")
    parser.add_argument(
        "--no-openvino",
        dest="openvino",
        action="store_false",
        help="leave the OpenVINO rows out (they need the openvino extra)",
    )
    parser.add_argument("--calib-images", type=int, default=16)
    parser.add_argument("--int8-method", default="minmax")
    parser.add_argument("--float-groups", default="", help="comma-separated node groups kept in float in the INT8 file")
    args = parser.parse_args()

    import torch
    from rich.console import Console

    from detkit.api import load_model
    from detkit.data.synth import generate_synthetic
    from detkit.export import export_onnx
    from detkit.stages.bench import benchmark

    console = Console(width=80)
    torch.manual_seed(0)
    detector = load_model(args.recipe, device="cpu", imgsz=args.imgsz)
    params = sum(p.numel() for p in detector.module.parameters())
    console.print(f"{args.recipe}: {params / 1e6:.2f} M parameters, {args.imgsz}×{args.imgsz}, random init")
    openvino = args.openvino and importlib.util.find_spec("openvino") is not None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export = export_onnx(detector, Path(tmp) / "model.onnx")
        console.print(f"export + verification {time.perf_counter() - t0:.1f} s; parity: {export.parity.summary()}")
        variants, calib, options = ["fp32"], None, None
        if args.int8:
            data = generate_synthetic(
                Path(tmp) / "calib", train=0, val=0, calib=args.calib_images, test=0, imgsz=args.imgsz, seed=1
            )
            calib = sorted((data / "images" / "calib").iterdir())
            variants.append("int8")
            options = {
                "sensitivity": False,
                "calib_images": args.calib_images,
                "method": args.int8_method,
                "float_groups": [g for g in args.float_groups.split(",") if g],
            }
        t0 = time.perf_counter()
        result = benchmark(
            detector,
            backends=("torch", "onnxruntime", *(["openvino"] if openvino else [])),
            variants=variants,
            calib_data=calib,
            int8_options=options,
            batch_sizes=[int(b) for b in args.batch.split(",")],
            threads=[int(t) for t in args.threads.split(",")],
            iters=args.iters,
            warmup=args.warmup,
        )
        console.print(f"benchmark (incl. quantization) {time.perf_counter() - t0:.1f} s")
    load_after = os.getloadavg()
    for n in result.notes:
        console.print(f"note: {n}")
    console.print(
        f"CPU: {result.device['cpu']} ({result.device['logical_cores']} logical cores); "
        + ", ".join(f"{k} {v}" for k, v in result.versions.items())
    )
    console.print(
        f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f} on {os.cpu_count()} logical cores"
    )
    console.print(latency_table(result, args.iters, args.warmup))


def latency_table(result, iters: int, warmup: int):
    """The side-by-side table (fits 80 columns): one row per runtime and precision, per (threads, batch)."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"latency, ms (median of {iters} after {warmup} warm-up, interleaved)",
        caption="pre: resize + batching; total adds post (< 0.1 ms); ×: total ÷ torch total, ÷ ORT fp32 total",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for col in ("runtime", "batch", "thr", "pre", "infer", "total", "p90", "×torch", "×ORT fp32"):
        table.add_column(col, justify="left" if col == "runtime" else "right", no_wrap=True)
    short = {"torch": "torch", "onnxruntime": "ORT", "openvino": "OpenVINO"}
    for t in sorted({r.threads for r in result.rows}):
        for b in sorted({r.batch for r in result.rows}):
            pt, fp32 = result.row("torch", b, t), result.row("onnxruntime", b, t, "fp32")
            rows = [pt, fp32, result.row("onnxruntime", b, t, "int8")]
            rows += [result.row("openvino", b, t, v) for v in ("fp32", "int8")]
            for r in rows:
                if r is None:
                    continue
                vs_torch = r.total_ms / pt.total_ms
                vs_fp32 = r.total_ms / fp32.total_ms
                goal = 0.5 if r.precision == "int8" else 0.6  # int8: vs ORT fp32; ORT fp32: vs torch
                table.add_row(
                    short[r.backend] + ("" if r is pt else f" {r.precision}"),
                    str(b),
                    str(t),
                    f"{r.pre_ms:.1f}",
                    f"{r.infer_ms:.1f}",
                    f"{r.total_ms:.1f}",
                    f"{r.total_p90_ms:.1f}",
                    "1.00×" if r is pt else _mark(vs_torch, 0.6 if r is fp32 else None),
                    "" if r is pt else _mark(vs_fp32, goal if r.precision == "int8" else None),
                )
    return table


def _mark(ratio: float, goal: float | None) -> str:
    """``0.47×``, green or red against the goal when the row has one."""
    if goal is None:
        return f"{ratio:.2f}×"
    return f"[{'green' if ratio <= goal else 'red'}]{ratio:.2f}×[/]"


if __name__ == "__main__":
    main()
