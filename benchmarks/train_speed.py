"""Training throughput of our RT-DETR-R18 step against Hugging Face ``RTDetrForObjectDetection`` (same inputs).

One training step = forward in train mode (denoising on), the full criterion, backward, clipping and an AdamW
step. Four variants are interleaved step by step: ours with bf16 autocast (what ``detkit train`` does on a CPU)
and in fp32, HF in fp32 (its default) and with bf16 autocast.
Both models are R18-vd as released (recipe:rtdetr-r18: CSP expansion 0.5, 3 decoder layers, 300 queries;
denoising 100), random initialisation, fp32, on the same
random batch of images and boxes. Prints images/s at 640 and 320 (batch 4), the speed ratio and the peak
resident memory of each variant (CPU: RSS high-water mark of a fresh process running two steps; CUDA: max
allocated).

    .venv/bin/python benchmarks/train_speed.py [--sizes 640 320] [--batch 4] [--iters 5] [--warmup 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

PARAMS: dict[str, int] = {}


def make_batch(batch: int, size: int, num_classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=g)
    targets = []
    for i in range(batch):
        n = 1 + i % 5
        cxcy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(n, 2, generator=g) * 0.3 + 0.05
        targets.append({"labels": torch.randint(0, num_classes, (n,), generator=g), "boxes": torch.cat([cxcy, wh], 1)})
    return images, targets


def ours(num_classes: int, device: torch.device):
    from detkit.config.recipe import resolve_recipe
    from detkit.engine.losses import SetCriterion, total_loss
    from detkit.engine.optim import build_optimizer
    from detkit.models.builder import build_model

    recipe = resolve_recipe("recipe:rtdetr-r18")
    model = build_model(recipe.model, num_classes).to(device).train()
    criterion = SetCriterion(num_classes, recipe.train.loss)
    opt = build_optimizer(model, recipe.train)
    PARAMS["detkit"] = sum(p.numel() for p in model.parameters())

    def step(images, targets):
        losses = criterion(model(images, targets), targets)
        loss = total_loss(losses)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        return loss

    return step


def huggingface(num_classes: int, device: torch.device):
    from transformers import RTDetrConfig, RTDetrForObjectDetection

    cfg = RTDetrConfig(
        backbone_config={"model_type": "rt_detr_resnet", "depths": [2, 2, 2, 2], "layer_type": "basic", "hidden_sizes": [64, 128, 256, 512],
                         "embedding_size": 64, "out_features": ["stage2", "stage3", "stage4"], "out_indices": [2, 3, 4]},
        encoder_in_channels=[128, 256, 512],
        hidden_expansion=0.5,
        decoder_layers=3,
        num_labels=num_classes,
    )
    model = RTDetrForObjectDetection(cfg).to(device).train()
    PARAMS["HF"] = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)

    def step(images, targets):
        labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
        loss = model(pixel_values=images, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        return loss

    return step


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:  # VmHWM: this process's own peak (ru_maxrss would inherit the parent's across fork + exec)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


VARIANTS = {  # name -> (builder, autocast dtype or None)
    "detkit bf16": (ours, torch.bfloat16),  # what `detkit train` runs on a CPU / Ampere+ GPU (train.amp, auto)
    "detkit fp32": (ours, None),
    "HF fp32": (huggingface, None),  # transformers' default
    "HF bf16": (huggingface, torch.bfloat16),
}


def timed_step(step, images, targets, device, dtype) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = step(images, targets)
    float(loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def speed(device, batch, size, iters, warmup, variants, num_classes=80) -> dict[str, float]:
    """Images/s per variant; the steps of all variants are interleaved so a changing machine load hits all alike."""
    steps = {}
    for name in variants:
        torch.manual_seed(0)
        steps[name] = VARIANTS[name][0](num_classes, device)
    images, targets = make_batch(batch, size, num_classes)
    images = images.to(device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    times: dict[str, list[float]] = {n: [] for n in variants}
    for i in range(warmup + iters):
        for name in variants:
            dt = timed_step(steps[name], images, targets, device, VARIANTS[name][1])
            if i >= warmup:
                times[name].append(dt)
    return {n: batch / statistics.median(t) for n, t in times.items()}


def memory(device, batch, size, name, num_classes=80) -> float:
    """Peak memory of two steps of one variant, measured in a fresh process (CPU RSS is a process high-water mark)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        gc.collect()
        step = VARIANTS[name][0](num_classes, device)
        images, targets = make_batch(batch, size, num_classes)
        images, targets = images.to(device), [{k: v.to(device) for k, v in t.items()} for t in targets]
        for _ in range(2):
            timed_step(step, images, targets, device, VARIANTS[name][1])
        return peak_memory_mb(device)
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import torch, train_speed as ts; "
            f"torch.set_num_threads({torch.get_num_threads()}); d = torch.device('cpu'); "
            f"s = ts.VARIANTS[{name!r}][0](80, d); x, t = ts.make_batch({batch}, {size}, 80); "
            f"[ts.timed_step(s, x, t, d, ts.VARIANTS[{name!r}][1]) for _ in range(2)]; print(ts.peak_memory_mb(d))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[640, 320])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"median of {args.iters} interleaved steps after {args.warmup} warm-up steps")
    for size in args.sizes:
        ips = speed(device, args.batch, size, args.iters, args.warmup, args.variants)
        mem = {} if args.no_memory else {n: memory(device, args.batch, size, n) for n in args.variants}
        print(f"\n{size}x{size}:")
        for n in args.variants:
            m = f"   peak {mem[n]:.0f} MB" if n in mem else ""
            print(f"  {n:<12} {ips[n]:7.2f} img/s{m}")
        if "detkit bf16" in ips and "HF fp32" in ips:
            print(f"  detkit (bf16, the training default) / HF (fp32, its default): {ips['detkit bf16'] / ips['HF fp32']:.2f}x")
        if "detkit fp32" in ips and "HF fp32" in ips:
            print(f"  same precision, fp32: {ips['detkit fp32'] / ips['HF fp32']:.2f}x")
        if "detkit bf16" in ips and "HF bf16" in ips:
            print(f"  same precision, bf16: {ips['detkit bf16'] / ips['HF bf16']:.2f}x")
    print("\nparameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in PARAMS.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
