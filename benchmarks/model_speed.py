"""Eager forward latency of the RT-DETR variants (eval mode, random weights) on this CPU, and CUDA when present.

For each device, recipe and batch size: median and best of ``--iters`` timed forwards after ``--warmup`` untimed
ones, images per second, and the GFLOPs of one image (see detkit.models.profile for what is counted). The
RepVGG blocks are fused, as in deployment. CUDA timings synchronise before reading the clock; ``--amp`` runs
CUDA forwards under fp16 autocast.

    .venv/bin/python benchmarks/model_speed.py [--recipes rtdetr-r18,rtdetr-r50] [--batch 1,4] [--imgsz 640]
                                               [--devices cpu,cuda] [--decoder-layers K] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from detkit.config.recipe import resolve_recipe
from detkit.models.profile import profile_config
from detkit.models.rtdetr.builder import build_model


def time_forward(model, x, device: torch.device, warmup: int, iters: int, amp: bool) -> list[float]:
    def step():
        with torch.inference_mode(), torch.autocast(device.type, torch.float16, enabled=amp and device.type == "cuda"):
            model(x)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="rtdetr-r18,rtdetr-r34,rtdetr-r50,rtdetr-r101")
    ap.add_argument("--batch", default="1,4")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--devices", default="cpu,cuda", help="cuda is skipped when not available")
    ap.add_argument("--decoder-layers", type=int, default=None, help="run only the first K decoder layers")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--amp", action="store_true", help="fp16 autocast on CUDA")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = [torch.device(d) for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    batches = [int(b) for b in args.batch.split(",")]
    title = (
        f"RT-DETR eager forward at {args.imgsz}×{args.imgsz} (eval, fused RepVGG); "
        f"cpu: {torch.get_num_threads()} threads"
    )
    if torch.cuda.is_available() and "cuda" in args.devices:
        title += f"; cuda: {torch.cuda.get_device_name()}{' fp16 autocast' if args.amp else ''}"
    table = Table(title=title)
    for col in ("device", "recipe", "dec. layers", "GFLOPs/img", "batch", "median ms", "best ms", "img/s"):
        table.add_column(col, justify="right" if col not in ("device", "recipe") else "left", no_wrap=True)
    console = Console()
    console.width = max(console.width, 100)
    for device in devices:
        name = str(device)
        for recipe_name in args.recipes.split(","):
            cfg = resolve_recipe(f"recipe:{recipe_name}").model
            gflops = profile_config(cfg, 80, (args.imgsz, args.imgsz)).gflops
            torch.manual_seed(0)
            model = build_model(cfg, 80).eval().fuse().to(device)
            if args.decoder_layers:
                model.set_eval_layers(args.decoder_layers)
            for b in batches:
                x = torch.rand(b, 3, args.imgsz, args.imgsz, device=device)
                times = time_forward(model, x, device, args.warmup, args.iters, args.amp)
                med = statistics.median(times)
                table.add_row(
                    name,
                    recipe_name,
                    str(model.eval_layers),
                    f"{gflops:.1f}",
                    str(b),
                    f"{med * 1e3:.1f}",
                    f"{min(times) * 1e3:.1f}",
                    f"{b / med:.2f}",
                )
                console.print(f"{name} {recipe_name} batch {b}: {med * 1e3:.1f} ms", style="dim")
            del model
    console.print(table)


if __name__ == "__main__":
    main()
