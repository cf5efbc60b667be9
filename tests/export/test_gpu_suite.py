"""benchmarks/gpu_suite.py without a GPU: the CUDA-only parts are skipped with a message and the run completes;
its measuring functions work on the CPU with a tiny model (what --smoke does at full size)."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import gpu_suite  # noqa: E402


def _suite(**kw):
    args = Namespace(imgsz=96, batch=2, eval_batch=2, iters=1, warmup=1, budget_s=600.0, smoke=True)
    for k, v in kw.items():
        setattr(args, k, v)
    return gpu_suite.Suite(args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the run without a GPU")
def test_without_cuda_everything_is_skipped_and_the_run_completes(capsys):
    assert gpu_suite.main(["--archs", "r18", "r50"]) == 0
    out = capsys.readouterr().out
    assert "no CUDA device" in out and out.count("SKIP") == 12 and "done in" in out and "0 failure(s)" in out
    assert (
        "SKIP HF fp16+GradScaler: needs CUDA" in out
        and "SKIP onnxruntime CUDA / TensorRT / fp16 ONNX: needs CUDA" in out
    )


def _tiny_builder(arch, device):
    from export.tiny import TINY_OVERRIDES

    from detkit.config.recipe import resolve_recipe
    from detkit.models.family import total_loss
    from detkit.models.rtdetr.builder import build_model

    recipe = resolve_recipe("recipe:rtdetr-r18", overrides=TINY_OVERRIDES)
    model = build_model(recipe.model, gpu_suite.NUM_CLASSES).to(device).train()
    criterion = recipe.family.build_criterion(recipe.loss, gpu_suite.NUM_CLASSES)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4), lambda im, t: total_loss(criterion(model(im, t), t))


@pytest.mark.slow
def test_training_step_measures_with_autocast_and_grad_scaler():
    """The fp16 + GradScaler step (the bf16 one is the same code without the scaler); autocast on a CPU is slow."""
    ips = gpu_suite.train_images_per_s(_suite(batch=1), _tiny_builder, "r18", torch.float16, True)
    assert ips > 0


def test_onnx_latency_and_parity_on_a_provider(export_small, ckpt):
    from detkit.api import load_model

    suite = _suite()
    suite.args.imgsz = 96
    ms, parity = gpu_suite.onnx_latency_and_parity(
        suite, export_small.model_path, load_model(ckpt, device="cpu"), ["CPUExecutionProvider"], "fp32"
    )
    assert ms > 0 and parity.passed and parity.batch_sizes == [1, 3]


def test_time_budget_skips_instead_of_overrunning(capsys):
    suite = _suite(budget_s=-1.0)
    assert suite.run("anything", lambda: 1 / 0) is None and suite.failures == 0
    assert "SKIP anything: time budget" in capsys.readouterr().out
    suite = _suite()
    assert suite.run("broken", lambda: 1 / 0) is None and suite.failures == 1
