"""Learning-rate schedule stepped once per optimizer step: linear warmup, then constant, step or cosine.

Warmup follows the official v2 ``LinearWarmup``: lr = base · min(1, (step + 1) / warmup). After warmup the
shape is defined over the fraction of the run, so a recipe does not depend on the dataset size.
"""

from __future__ import annotations

import bisect
import math

import torch

from detkit.config.train import TrainConfig


def lr_factor(step: int, total_steps: int, warmup: int, cfg: TrainConfig) -> float:
    """Multiplier of every group's base lr at optimizer step ``step`` (0-based)."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if cfg.schedule == "constant":
        return warm
    progress = min(1.0, step / max(1, total_steps))
    if cfg.schedule == "step":
        return warm * cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), progress)
    # cosine from the end of warmup to the end of the run
    span = max(1, total_steps - warmup)
    t = min(1.0, max(0.0, (step - warmup) / span))
    return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` (its state dict is plain values, so checkpoints load with ``weights_only``)."""
    warmup = cfg.warmup_steps(total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup, cfg))
