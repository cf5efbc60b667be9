"""The GPU path in one run (< 8 minutes on one GPU), for RT-DETR-R18 and -R50 at 640, random initialisation:

1. training step images/s with AMP, bf16 autocast and fp16 autocast + GradScaler, for detkit's step and Hugging Face's
   ``RTDetrForObjectDetection`` step (built offline from its config) on the same batch, in the same process;
2. eval throughput (module forward + post-processing, batch 16) in fp32, bf16 and fp16 autocast;
3. the exported graph under onnxruntime's CUDA and (when installed) TensorRT execution providers: latency at
   batch 1 and parity with PyTorch fp32 on the GPU (TF32 off; ``detkit.export.verify.verify_parity``, batch 1 and 3);
4. the fp16 ONNX graph (``export_onnx(fp16=True)``) on the CUDA provider against the same PyTorch reference: the
   precision collapse other projects report shows here as a failed parity.

Without a GPU every CUDA-only measurement is skipped with a message and the script still runs to the end.
``--smoke`` runs every section on the CPU at a tiny size instead (CPU provider in place of CUDA), so the code
paths are exercised where no GPU exists (that is what the tests do). A time budget (``--budget-s``, default 450 s)
skips what would not fit rather than overrunning. Exit code 1 if any measurement failed (skips are not failures).

    python benchmarks/gpu_suite.py [--archs r18 r50] [--imgsz 640] [--batch 8] [--budget-s 450] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_speed import make_batch  # noqa: E402  (the same random batch as the CPU training benchmark)

RECIPES = {"r18": "recipe:rtdetr-r18", "r50": "recipe:rtdetr-r50"}
NUM_CLASSES = 80


class Suite:
    def __init__(self, args):
        self.args, self.t0, self.failures = args, time.perf_counter(), 0
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if cuda and not args.smoke else "cpu")
        self.gpu = self.device.type == "cuda"

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def skip(self, what: str, why: str) -> None:
        print(f"  SKIP {what}: {why}")

    def run(self, what: str, fn, *a, cuda_only: bool = True):
        """One measurement: skipped without a GPU (unless --smoke) or past the time budget; failures are printed."""
        if cuda_only and not self.gpu and not self.args.smoke:
            return self.skip(what, "needs CUDA (no GPU here; --smoke runs it on the CPU at a tiny size)")
        if self.elapsed() > self.args.budget_s:
            return self.skip(what, f"time budget of {self.args.budget_s:.0f} s used up")
        try:
            return fn(*a)
        except Exception as e:  # noqa: BLE001 - a benchmark reports and carries on
            self.failures += 1
            print(f"  FAILED {what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return None

    def sync(self) -> None:
        if self.gpu:
            torch.cuda.synchronize(self.device)


# ---------------------------------------------------------------------------------------------------------------------
# training


def detkit_model(arch: str, device):
    from detkit.config.recipe import resolve_recipe
    from detkit.engine.optim import build_optimizer
    from detkit.models.family import total_loss
    from detkit.models.rtdetr.builder import build_model

    recipe = resolve_recipe(RECIPES[arch])
    model = build_model(recipe.model, NUM_CLASSES).to(device).train()
    criterion = recipe.family.build_criterion(recipe.loss, NUM_CLASSES)
    return (
        model,
        build_optimizer(model, recipe.train),
        lambda images, targets: total_loss(criterion(model(images, targets), targets)),
    )


def hf_model(arch: str, device):
    from transformers import RTDetrConfig, RTDetrForObjectDetection

    if arch == "r18":
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
            num_labels=NUM_CLASSES,
        )
    else:
        cfg = RTDetrConfig(num_labels=NUM_CLASSES)  # the defaults are RT-DETR-R50 (ResNet-50-vd, 6 decoder layers)
    model = RTDetrForObjectDetection(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)

    def loss_of(images, targets):
        return model(
            pixel_values=images, labels=[{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
        ).loss

    return model, opt, loss_of


def train_images_per_s(suite: Suite, builder, arch: str, dtype, use_scaler: bool) -> float:
    """Median step time → images/s of forward + loss + backward + clip 0.1 + optimizer step under autocast."""
    a, dev = suite.args, suite.device
    torch.manual_seed(0)
    model, opt, loss_of = builder(arch, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=use_scaler)
    images, targets = make_batch(a.batch, a.imgsz, NUM_CLASSES)
    images, targets = images.to(dev), [{k: v.to(dev) for k, v in t.items()} for t in targets]
    times = []
    for i in range(a.warmup + a.iters):
        suite.sync()
        t0 = time.perf_counter()
        with torch.autocast(device_type=dev.type, dtype=dtype):
            loss = loss_of(images, targets)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        scaler.step(opt)
        scaler.update()
        suite.sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    if not torch.isfinite(loss.detach()).item():
        raise RuntimeError(f"non-finite loss {float(loss)}")
    del model, opt
    if suite.gpu:
        torch.cuda.empty_cache()
    return a.batch / statistics.median(times)


def section_train(suite: Suite, arch: str) -> None:
    print(
        f"\n[{arch}] training step, batch {suite.args.batch} at {suite.args.imgsz} px "
        f"(images/s, median of {suite.args.iters})"
    )
    try:
        import transformers  # noqa: F401

        have_hf = True
    except ImportError:
        have_hf = False
    results = {}
    for side, builder in (("detkit", detkit_model), ("HF", hf_model)):
        for label, dtype, scaler in (("bf16", torch.bfloat16, False), ("fp16+GradScaler", torch.float16, True)):
            name = f"{side} {label}"
            if side == "HF" and not have_hf:
                suite.skip(name, "transformers is not installed")
                continue
            ips = suite.run(name, train_images_per_s, suite, builder, arch, dtype, scaler)
            if ips is not None:
                results[name] = ips
                print(f"  {name:<24} {ips:8.2f} img/s")
    for label in ("bf16", "fp16+GradScaler"):
        if f"detkit {label}" in results and f"HF {label}" in results:
            print(f"  detkit / HF ({label}): {results[f'detkit {label}'] / results[f'HF {label}']:.2f}x")


# ---------------------------------------------------------------------------------------------------------------------
# evaluation and deployment


def eval_images_per_s(suite: Suite, detector, dtype) -> float:
    from detkit.models.postprocess import postprocess

    a, dev = suite.args, suite.device
    module = detector.module.eval()
    images = torch.randint(0, 256, (a.eval_batch, 3, a.imgsz, a.imgsz), dtype=torch.uint8, device=dev)
    sizes = torch.tensor([[a.imgsz, a.imgsz]] * a.eval_batch, device=dev)
    times = []
    with (
        torch.inference_mode(),
        torch.autocast(device_type=dev.type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        for i in range(a.warmup + a.iters):
            suite.sync()
            t0 = time.perf_counter()
            out = module(images)
            postprocess(out["logits"].float(), out["boxes"].float(), sizes)
            suite.sync()
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
    return a.eval_batch / statistics.median(times)


def onnx_latency_and_parity(
    suite: Suite, path: Path, reference, providers: list[str], precision: str
) -> tuple[float, object]:
    import numpy as np

    from detkit.export.runtime import OnnxDetector
    from detkit.export.verify import verify_parity

    det = OnnxDetector(path, providers=providers)
    if det.providers[0] != providers[0]:
        raise RuntimeError(f"onnxruntime fell back to {det.providers[0]}")
    a = suite.args
    images = np.random.default_rng(0).integers(0, 256, (1, 3, a.imgsz, a.imgsz), dtype=np.uint8)
    sizes = np.array([[a.imgsz, a.imgsz]], dtype=np.int64)
    times = []
    for i in range(a.warmup + a.iters):
        t0 = time.perf_counter()
        det.run(images, sizes)
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    parity = verify_parity(reference, det, precision=precision)
    return 1000 * statistics.median(times), parity


def section_deploy(suite: Suite, arch: str, work: Path) -> None:
    import onnxruntime as ort

    from detkit.api import Detector, load_model
    from detkit.export import export_onnx

    a = suite.args
    print(f"\n[{arch}] eval throughput, batch {a.eval_batch} at {a.imgsz} px, and exported graphs")
    if not suite.gpu and not a.smoke:
        for what in ("eval fp32 / bf16 / fp16", "onnxruntime CUDA / TensorRT / fp16 ONNX"):
            suite.skip(what, "needs CUDA (no GPU here; --smoke runs it on the CPU at a tiny size)")
        return
    torch.manual_seed(0)
    detector = load_model(RECIPES[arch], device="cpu", imgsz=a.imgsz)
    on_dev = Detector(detector.module.to(suite.device), detector.class_map, detector.imgsz, suite.device)
    for label, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        ips = suite.run(f"eval {label}", eval_images_per_s, suite, on_dev, dtype)
        if ips is not None:
            print(f"  eval {label:<6} {ips:8.2f} img/s")

    available = ort.get_available_providers()
    gpu_provider = "CUDAExecutionProvider" if suite.gpu else "CPUExecutionProvider"
    if suite.gpu and gpu_provider not in available:
        suite.skip(
            "onnxruntime CUDA / TensorRT / fp16 ONNX", f"onnxruntime offers {available} (install onnxruntime-gpu)"
        )
        return
    if suite.gpu:  # the reference in true fp32: TF32 matmuls would make PyTorch itself the less exact side
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    files = {}
    for precision in ("fp32", "fp16"):
        t0 = time.perf_counter()
        res = suite.run(
            f"export {precision}",
            lambda p=precision: export_onnx(detector, work / f"{arch}_{p}.onnx", fp16=p == "fp16", verify=False),
            cuda_only=False,
        )
        if res is not None:
            files[precision] = res.model_path
            print(f"  export {precision}: {time.perf_counter() - t0:.1f} s")
    rows = [
        (
            "onnxruntime " + gpu_provider.replace("ExecutionProvider", ""),
            [gpu_provider, "CPUExecutionProvider"],
            "fp32",
        ),
        (
            "onnxruntime " + gpu_provider.replace("ExecutionProvider", "") + " fp16 graph",
            [gpu_provider, "CPUExecutionProvider"],
            "fp16",
        ),
    ]
    if "TensorrtExecutionProvider" in available and suite.gpu:
        rows.append(
            (
                "onnxruntime TensorRT",
                ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                "fp32",
            )
        )
    else:
        suite.skip("onnxruntime TensorRT", "TensorrtExecutionProvider is not available" if suite.gpu else "needs CUDA")
    for name, providers, precision in rows:
        if precision not in files:
            continue
        r = suite.run(
            name, onnx_latency_and_parity, suite, files[precision], on_dev, providers, precision, cuda_only=False
        )
        if r is not None:
            ms, parity = r
            print(
                f"  {name:<34} batch 1 {ms:7.2f} ms | parity {'ok' if parity.passed else 'FAILED'}: {parity.summary()}"
            )
            if not parity.passed and precision == "fp32":
                suite.failures += 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["r18", "r50"], choices=list(RECIPES))
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=8, help="training batch")
    ap.add_argument("--eval-batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=450.0, help="skip what starts after this many seconds")
    ap.add_argument("--smoke", action="store_true", help="run every section on the CPU at a tiny size (no GPU needed)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.imgsz, args.batch, args.eval_batch, args.iters, args.warmup = (
            min(args.imgsz, 160),
            1,
            1,
            1,
            1,
        )  # 160: >= 300 tokens
    suite = Suite(args)
    name = torch.cuda.get_device_name(suite.device) if suite.gpu else "CPU" + (" (smoke run)" if args.smoke else "")
    print(
        f"torch {torch.__version__}, device {suite.device} ({name}); archs {', '.join(args.archs)} at {args.imgsz} px"
    )
    if not suite.gpu and not args.smoke:
        print("no CUDA device: every CUDA-only measurement below is skipped")
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as work:
        for arch in args.archs:
            section_train(suite, arch)
            section_deploy(suite, arch, Path(work))
    print(f"\ndone in {suite.elapsed():.0f} s; {suite.failures} failure(s)")
    return 1 if suite.failures else 0


if __name__ == "__main__":
    sys.exit(main())
