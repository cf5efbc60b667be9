"""Parameter groups per the spec for R18, the lr schedule shapes, EMA decay ramp and coverage."""

from __future__ import annotations

import math

import pytest
import torch

from detkit.config.train import TrainConfig
from detkit.engine.ema import ModelEMA
from detkit.engine.optim import build_optimizer, param_groups
from detkit.engine.schedule import build_scheduler, lr_factor
from detkit.models.rtdetr.builder import build_model
from detkit.models.rtdetr.config import ModelConfig


@pytest.fixture(scope="module")
def r18():
    with torch.device("meta"):
        return build_model(ModelConfig(depth=18, freeze_stem=False, frozen_bn=False, decoder_layers=3), 80)


def test_r18_parameter_groups_are_disjoint_and_follow_the_spec(r18):
    groups = param_groups(r18, TrainConfig())
    names = [n for g in groups for n in g["names"]]
    assert len(names) == len(set(names)) == sum(1 for p in r18.parameters() if p.requires_grad)
    bb_norm, bb_rest, encdec_norm_bias, default = groups
    assert all("backbone" in n and "norm" in n for n in bb_norm["names"]) and (
        bb_norm["lr"],
        bb_norm["weight_decay"],
    ) == (1e-5, 0.0)
    assert all("backbone" in n and "norm" not in n for n in bb_rest["names"]) and (
        bb_rest["lr"],
        bb_rest["weight_decay"],
    ) == (1e-5, 1e-4)
    assert all(("norm" in n or "bias" in n) and "backbone" not in n for n in encdec_norm_bias["names"])
    assert (encdec_norm_bias["lr"], encdec_norm_bias["weight_decay"]) == (1e-4, 0.0)
    assert "decoder.decoder.layers.0.self_attn.in_proj_bias" in encdec_norm_bias["names"]
    assert default["pattern"] is None and (default["lr"], default["weight_decay"]) == (1e-4, 1e-4)
    assert any("denoising_class_embed" in n for n in default["names"])
    assert all(n.endswith("weight") and "norm" not in n for n in default["names"])
    backbone = [n for n, _ in r18.named_parameters() if n.startswith("backbone")]
    assert sorted(backbone) == sorted(bb_norm["names"] + bb_rest["names"])


def test_single_lr_recipe_puts_everything_in_the_default_group(r18):
    groups = param_groups(r18, TrainConfig(param_groups=[], lr=2e-4))
    assert len(groups) == 1 and groups[0]["lr"] == 2e-4


def test_optimizer_is_adamw_with_group_settings():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    opt = build_optimizer(model, TrainConfig(param_groups=[{"pattern": "bias", "weight_decay": 0.0}]))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 1e-4]


def test_warmup_then_constant():
    cfg = TrainConfig(warmup_iters=2000)
    assert lr_factor(0, 10**6, 2000, cfg) == pytest.approx(1 / 2000)
    assert lr_factor(999, 10**6, 2000, cfg) == pytest.approx(0.5)
    assert lr_factor(1999, 10**6, 2000, cfg) == 1.0
    assert lr_factor(500_000, 10**6, 2000, cfg) == 1.0


def test_step_and_cosine_are_fractions_of_the_run():
    step = TrainConfig(schedule="step", milestones=[0.5, 0.75], warmup_iters=0)
    assert [lr_factor(s, 100, 0, step) for s in (10, 60, 90)] == pytest.approx([1.0, 0.1, 0.01])
    cos = TrainConfig(schedule="cosine", warmup_fraction=0.1, min_lr_ratio=0.05)
    total = 1000
    warm = cos.warmup_steps(total)
    assert warm == 100
    assert lr_factor(49, total, warm, cos) == pytest.approx(0.5)
    assert lr_factor(100, total, warm, cos) == pytest.approx(1.0)
    assert lr_factor(550, total, warm, cos) == pytest.approx(0.05 + 0.95 * 0.5)
    assert lr_factor(total, total, warm, cos) == pytest.approx(0.05)


def test_scheduler_drives_group_lrs():
    model = torch.nn.Linear(2, 2)
    cfg = TrainConfig(param_groups=[{"pattern": "bias", "lr": 1e-5}], warmup_iters=4)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=100)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-5 / 4, 1e-4 / 4])
    for _ in range(3):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-5, 1e-4])


def test_ema_ramp_and_coverage_of_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9999, warmups=2000)
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.dtype.is_floating_point:
                v.add_(1.0)
        model[1].num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    for k, v in ema.module.state_dict().items():
        if v.dtype.is_floating_point:  # parameters and BN running stats
            assert torch.allclose(v, d * before[k] + (1 - d) * model.state_dict()[k], atol=1e-6), k
    assert ema.module[1].num_batches_tracked.item() == 7
    ema.updates = 10**6
    assert ema.current_decay() == pytest.approx(0.9999)
