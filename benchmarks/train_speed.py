"""Training throughput of our RT-DETR-R18 step against Hugging Face ``RTDetrForObjectDetection`` (same inputs).

One training step = forward in train mode (denoising on), the full criterion, backward and an AdamW step.
Both models are R18-vd with 3 decoder layers, 300 queries, random initialisation, fp32, on the same
random batch of images and boxes. Prints images/s at 640 and 320 (batch 4), the speed ratio and the peak
resident memory of each measurement (CPU: process RSS high-water mark; CUDA: max allocated).

    .venv/bin/python benchmarks/train_speed.py [--sizes 640 320] [--batch 4] [--iters 5] [--warmup 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time

import torch


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
    from detkit.engine.config import TrainConfig
    from detkit.engine.losses import SetCriterion, total_loss
    from detkit.engine.optim import build_optimizer
    from detkit.models.builder import build_model
    from detkit.models.config import ModelConfig

    model = build_model(ModelConfig(depth=18, freeze_stem=False, frozen_bn=False, decoder_layers=3), num_classes).to(device).train()
    criterion = SetCriterion(num_classes)
    opt = build_optimizer(model, TrainConfig())

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
        decoder_layers=3,
        num_labels=num_classes,
    )
    model = RTDetrForObjectDetection(cfg).to(device).train()
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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(build, device, batch, size, iters, warmup, num_classes=80) -> tuple[float, float]:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = build(num_classes, device)
    images, targets = make_batch(batch, size, num_classes)
    images = images.to(device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    times = []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        loss = step(images, targets)
        float(loss.detach())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times), peak_memory_mb(device)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[640, 320])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, batch {args.batch}, fp32, "
          f"median of {args.iters} steps after {args.warmup} warm-up steps")
    print(f"{'size':>5} {'detkit img/s':>13} {'HF img/s':>10} {'ratio':>6} {'detkit peak MB':>15} {'HF peak MB':>11}")
    for size in args.sizes:
        torch.manual_seed(0)
        ours_ips, ours_mem = measure(ours, device, args.batch, size, args.iters, args.warmup)
        torch.manual_seed(0)
        hf_ips, hf_mem = measure(huggingface, device, args.batch, size, args.iters, args.warmup)
        print(f"{size:>5} {ours_ips:>13.2f} {hf_ips:>10.2f} {ours_ips / hf_ips:>5.2f}x {ours_mem:>15.0f} {hf_mem:>11.0f}", flush=True)
    if device.type == "cpu":
        print("note: CPU peak memory is the process RSS high-water mark (cumulative across rows).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
