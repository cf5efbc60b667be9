"""Training throughput of our RT-DETR-R18 step against Hugging Face ``RTDetrForObjectDetection`` (same inputs).

One training step = forward in train mode (denoising on), the full criterion, backward, clipping and an AdamW
step. Four variants: ours with bf16 autocast (what ``detkit train`` runs on a CPU) and in fp32, HF in fp32 (its
default) and with bf16 autocast. Both models are R18-vd as released (recipe:rtdetr-r18: CSP expansion 0.5,
3 decoder layers, 300 queries; denoising 100), random initialisation, on the same random batch of images and
boxes; HF keeps its defaults (including its frozen backbone batch norms; our R18 recipe trains them, as the
official recipe does).

Every measurement runs in a fresh process (one model, one allocator history), and the variants take turns
over ``--rounds`` rounds so a changing machine load hits all alike; the figure is the median step time over
all rounds. Measuring all variants inside one process is misleading on a CPU: the models' allocations
interleave, and large tensors (> 32 MB at 640 px) are mapped and unmapped by the C allocator on every step, so
each variant's speed then depends on what ran before it. Peak memory is the process's high-water mark (CPU:
VmHWM; CUDA: max allocated).

    .venv/bin/python benchmarks/train_speed.py [--sizes 640 320] [--batch 4] [--iters 5] [--warmup 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
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


def training_step(model, optimizer, loss_of):
    """The step both sides run: loss, backward, clipping at 0.1 (the recipe's), optimizer step."""

    def step(images, targets):
        loss = loss_of(images, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        return loss

    return step


def ours(num_classes: int, device: torch.device):
    from detkit.config.recipe import resolve_recipe
    from detkit.engine.optim import build_optimizer
    from detkit.models.family import total_loss
    from detkit.models.rtdetr.builder import build_model

    recipe = resolve_recipe("recipe:rtdetr-r18")
    model = build_model(recipe.model, num_classes).to(device).train()
    criterion = recipe.family.build_criterion(recipe.loss, num_classes)
    opt = build_optimizer(model, recipe.train)
    PARAMS["detkit"] = sum(p.numel() for p in model.parameters())

    return training_step(model, opt, lambda images, targets: total_loss(criterion(model(images, targets), targets)))


def huggingface(num_classes: int, device: torch.device):
    from transformers import RTDetrConfig, RTDetrForObjectDetection

    cfg = RTDetrConfig(
        backbone_config={
            "model_type": "rt_detr_resnet",
            "depths": [2, 2, 2, 2],
            "layer_type": "basic",
            "hidden_sizes": [64, 128, 256, 512],
            "embedding_size": 64,
            "out_features": ["stage2", "stage3", "stage4"],
            "out_indices": [2, 3, 4],
        },
        encoder_in_channels=[128, 256, 512],
        hidden_expansion=0.5,
        decoder_layers=3,
        num_labels=num_classes,
    )
    model = RTDetrForObjectDetection(cfg).to(device).train()
    PARAMS["HF"] = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)

    def hf_loss(images, targets):
        labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
        return model(pixel_values=images, labels=labels).loss

    return training_step(model, opt, hf_loss)


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


def measure(
    name: str, device: str, batch: int, size: int, iters: int, warmup: int, threads: int | None, num_classes: int = 80
) -> dict:
    """Step times and peak memory of one variant, in this process (call it in a fresh one)."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    builder, dtype = VARIANTS[name]
    step = builder(num_classes, dev)
    images, targets = make_batch(batch, size, num_classes)
    images, targets = images.to(dev), [{k: v.to(dev) for k, v in t.items()} for t in targets]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = [timed_step(step, images, targets, dev, dtype) for _ in range(warmup + iters)][warmup:]
    return {"times": times, "peak_mb": peak_memory_mb(dev), "params": PARAMS}


def measure_in_fresh_process(name: str, args, size: int) -> dict:
    spec = json.dumps(
        {
            "name": name,
            "device": args.device,
            "batch": args.batch,
            "size": size,
            "iters": args.iters,
            "warmup": args.warmup,
            "threads": args.threads,
        }
    )
    code = (
        f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import train_speed as ts; "
        f"print('RESULT ' + json.dumps(ts.measure(**json.loads(sys.argv[1]))))"
    )
    out = subprocess.run([sys.executable, "-c", code, spec], check=False, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{name} at {size} px failed:\n{out.stderr[-2000:]}")
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[640, 320])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per process")
    ap.add_argument("--rounds", type=int, default=2, help="fresh processes per variant, taking turns")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args(argv)
    threads = args.threads or torch.get_num_threads()
    args.threads = threads
    print(
        f"torch {torch.__version__}, device {args.device}, threads {threads}, batch {args.batch}; per variant "
        f"{args.rounds} fresh processes x ({args.warmup} warm-up + {args.iters} timed steps), median step"
    )
    params = {}
    for size in args.sizes:
        times: dict[str, list[float]] = {n: [] for n in args.variants}
        peak: dict[str, float] = {}
        for _ in range(args.rounds):
            for name in args.variants:
                r = measure_in_fresh_process(name, args, size)
                times[name] += r["times"]
                peak[name] = max(peak.get(name, 0.0), r["peak_mb"])
                params.update(r["params"])
        ips = {n: args.batch / statistics.median(t) for n, t in times.items()}
        print(f"\n{size}x{size}:")
        for n in args.variants:
            spread = f"(steps {min(times[n]):.2f}-{max(times[n]):.2f} s)"
            print(f"  {n:<12} {ips[n]:7.2f} img/s {spread:<24} peak {peak[n]:.0f} MB")
        pairs = [
            ("detkit bf16", "HF fp32", "detkit (bf16, its training default) / HF (fp32, its default)"),
            ("detkit fp32", "HF fp32", "same precision, fp32"),
            ("detkit bf16", "HF bf16", "same precision, bf16"),
        ]
        for a, b, label in pairs:
            if a in ips and b in ips:
                print(f"  {label}: {ips[a] / ips[b]:.2f}x")
    print("\nparameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
