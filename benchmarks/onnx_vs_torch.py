"""onnxruntime vs PyTorch eager latency of RT-DETR-R18 at 640 on this machine, side by side in one run.

    python benchmarks/onnx_vs_torch.py [--batch 1,4] [--threads 2] [--iters 10] [--imgsz 640]

Random initialisation (speed does not depend on the weights); 80 COCO classes, 300 queries, 3 decoder layers as
the recipe says. The model is exported with detkit's own export (verified for parity first), then both backends run
the same end-to-end step (pre-processing, graph incl. top-k post-processing, host filter) through ``detkit.bench``.
Goal: onnxruntime total latency <= 0.6x PyTorch eager. Figures on a shared CPU vary with the load of other jobs.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from detkit.api import load_model
    from detkit.bench import benchmark
    from detkit.export.onnx_export import export_onnx

    console = Console(width=max(Console().width, 110))
    torch.manual_seed(0)
    detector = load_model(args.recipe, device="cpu", imgsz=args.imgsz)
    params = sum(p.numel() for p in detector.module.parameters())
    console.print(f"{args.recipe}: {params / 1e6:.2f} M parameters, {args.imgsz}×{args.imgsz}, random init")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export = export_onnx(detector, Path(tmp) / "model.onnx")
        console.print(f"export + verification {time.perf_counter() - t0:.1f} s; parity: {export.parity.summary()}")
        result = benchmark(detector, backends=("torch", "onnxruntime"),
                           batch_sizes=[int(b) for b in args.batch.split(",")], threads=[int(t) for t in args.threads.split(",")],
                           iters=args.iters, warmup=args.warmup)
    console.print(f"CPU: {result.device['cpu']} ({result.device['logical_cores']} logical cores); " + ", ".join(f"{k} {v}" for k, v in result.versions.items()))
    table = Table(title=f"end-to-end latency, ms (median of {args.iters}, after {args.warmup} warm-up)")
    for col in ("backend", "batch", "threads", "pre", "inference", "post", "total", "total p90", "vs torch"):
        table.add_column(col, justify="right" if col not in ("backend",) else "left")
    for t in sorted({r.threads for r in result.rows}):
        for b in sorted({r.batch for r in result.rows}):
            pt = result.row("torch", b, t)
            for r in (pt, result.row("onnxruntime", b, t)):
                ratio = r.total_ms / pt.total_ms
                shown = "1.00×" if r is pt else f"[{'green' if ratio <= 0.6 else 'red'}]{ratio:.2f}×[/]"
                table.add_row(r.backend, str(b), str(t), f"{r.pre_ms:.1f}", f"{r.infer_ms:.1f}", f"{r.post_ms:.2f}",
                              f"{r.total_ms:.1f}", f"{r.total_p90_ms:.1f}", shown)
    console.print(table)


if __name__ == "__main__":
    main()
