"""DEIM's flat-cosine schedule and the quadratic warmup (docs/dfine-losses.md §5)."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from detkit.config.train import TrainConfig
from detkit.engine.schedule import build_scheduler, lr_factor

TOTAL = 1000  # 10 epochs of 100 optimizer steps


def _cfg(**kw) -> TrainConfig:
    base = dict(
        epochs=10,
        schedule="flat_cosine",
        warmup_iters=20,
        warmup_shape="quadratic",
        flat_epoch=4,
        cosine_end_epoch=8,
        min_lr_ratio=0.5,
    )
    base.update(kw)
    return TrainConfig(**base)


def _f(step: int, cfg: TrainConfig) -> float:
    return lr_factor(step, TOTAL, cfg.warmup_steps(TOTAL), cfg)


def test_flat_cosine_values_at_chosen_steps():
    cfg = _cfg()
    # quadratic warmup over 20 steps
    assert _f(0, cfg) == pytest.approx((1 / 20) ** 2)
    assert _f(9, cfg) == pytest.approx(0.25)
    assert _f(19, cfg) == 1.0
    # flat at the base lr until epoch 4 (step 400)
    assert [_f(s, cfg) for s in (20, 200, 399, 400)] == [1.0, 1.0, 1.0, 1.0]
    # half cosine from 1 to 0.5 over steps 400..800
    assert _f(500, cfg) == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi / 4)))
    assert _f(600, cfg) == pytest.approx(0.75)
    assert _f(799, cfg) == pytest.approx(0.5, abs=1e-4)
    # the last two epochs stay at the minimum
    assert [_f(s, cfg) for s in (800, 900, 999, 1000)] == [0.5, 0.5, 0.5, 0.5]


def test_fractions_of_the_run_give_the_same_schedule():
    by_epoch, by_fraction = _cfg(), _cfg(flat_epoch=0.4, cosine_end_epoch=0.8)
    assert [_f(s, by_fraction) for s in range(0, TOTAL, 7)] == [_f(s, by_epoch) for s in range(0, TOTAL, 7)]


def test_without_cosine_end_the_decay_lasts_to_the_end_and_never_rises():
    cfg = _cfg(cosine_end_epoch=None, min_lr_ratio=0.0, warmup_shape="linear")
    assert _f(9, cfg) == pytest.approx(0.5)  # linear warmup
    assert _f(700, cfg) == pytest.approx(0.5)  # the middle of steps 400..1000
    values = [_f(s, cfg) for s in range(20, TOTAL + 1)]
    assert all(b <= a for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.0)


def test_flat_epoch_inside_warmup_starts_the_cosine_after_warmup():
    cfg = _cfg(flat_epoch=0, warmup_iters=100)
    assert _f(99, cfg) == 1.0  # warmup completes at the full lr: no jump down
    assert _f(100, cfg) == 1.0
    assert _f(101, cfg) < 1.0


def test_no_decay_when_min_ratio_is_one():
    """DEIM-D-FINE-N keeps its lr: flat to the end."""
    cfg = _cfg(flat_epoch=1.0, cosine_end_epoch=None, min_lr_ratio=1.0)
    assert {_f(s, cfg) for s in range(20, TOTAL + 1, 10)} == {1.0}


def test_quadratic_warmup_applies_to_other_schedules():
    cfg = TrainConfig(schedule="constant", warmup_iters=10, warmup_shape="quadratic")
    assert lr_factor(4, 100, 10, cfg) == pytest.approx(0.25)
    assert lr_factor(50, 100, 10, cfg) == 1.0


def test_scheduler_drives_group_lrs_and_resumes():
    cfg = _cfg(lr=1e-3)
    opt = torch.optim.AdamW(
        [
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-3},
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-4},
        ]
    )
    sched = build_scheduler(opt, cfg, total_steps=TOTAL)
    for _ in range(600):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.75)
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-4 * 0.75)
    state = sched.state_dict()
    opt2 = torch.optim.AdamW(
        [
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-3},
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-4},
        ]
    )
    sched2 = build_scheduler(opt2, cfg, total_steps=TOTAL)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"flat_epoch": None}, "flat_epoch"),
        ({"flat_epoch": 6, "cosine_end_epoch": 5}, "cosine_end_epoch"),
        ({"flat_epoch": -1}, "flat_epoch"),
        ({"cosine_end_epoch": 1.5}, "cosine_end_epoch"),
        ({"warmup_shape": "cubic"}, "warmup_shape"),
    ],
)
def test_bad_flat_cosine_settings_name_the_field(kw, match):
    with pytest.raises(ValidationError, match=match):
        _cfg(**kw)
