"""Learning-rate schedule stepped once per optimizer step: warmup, then constant, step, cosine or flat-cosine.

Warmup follows the official v2 ``LinearWarmup``: lr = base · min(1, (step + 1) / warmup); ``warmup_shape:
quadratic`` squares that factor (DEIM). After warmup the shape is defined over the fraction of the run, so a
recipe does not depend on the dataset size. ``flat_cosine`` (DEIM, docs/dfine-losses.md §5) holds the base lr
until ``flat_epoch``, decays it by a half cosine to ``min_lr_ratio`` at ``cosine_end_epoch`` (default: the end of
the run) and stays there.
"""

from __future__ import annotations

import bisect
import math

import torch

from detkit.config.train import TrainConfig


def lr_factor(step: int, total_steps: int, warmup: int, cfg: TrainConfig) -> float:
    """Multiplier of every group's base lr at optimizer step ``step`` (0-based)."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if cfg.warmup_shape == "quadratic":
        warm = warm * warm
    if cfg.schedule == "constant":
        return warm
    if cfg.schedule == "flat_cosine":
        return warm * _flat_cosine(step, total_steps, warmup, cfg)
    progress = min(1.0, step / max(1, total_steps))
    if cfg.schedule == "step":
        return warm * cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), progress)
    # cosine from the end of warmup to the end of the run
    span = max(1, total_steps - warmup)
    t = min(1.0, max(0.0, (step - warmup) / span))
    return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def _flat_cosine(step: int, total_steps: int, warmup: int, cfg: TrainConfig) -> float:
    """1 until the flat epoch (and the end of warmup), half cosine to ``min_lr_ratio`` at the cosine end epoch."""
    per_epoch = total_steps / cfg.epochs
    start = max(warmup, int(round(cfg.epoch_point(cfg.flat_epoch) * per_epoch)))
    end_epoch = cfg.epoch_point(cfg.cosine_end_epoch)
    end = total_steps if end_epoch is None else int(round(end_epoch * per_epoch))
    if step < start:
        return 1.0
    if step >= end:
        return cfg.min_lr_ratio
    t = (step - start) / (end - start)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` (its state dict is plain values, so checkpoints load with ``weights_only``)."""
    warmup = cfg.warmup_steps(total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup, cfg))
