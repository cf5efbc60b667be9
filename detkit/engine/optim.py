"""AdamW with parameter groups chosen by regular expressions over parameter names (docs/rt-detr.md §6.2).

Each rule takes the trainable parameters whose name matches (``re.findall``) and that no earlier rule took,
so the groups are disjoint by construction; parameters matched by no rule form the final default group with
the base lr and weight decay.
"""

from __future__ import annotations

import re

import torch

from detkit.config.train import TrainConfig


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Groups as dicts ``{"params", "names", "lr", "weight_decay"}`` (empty groups are dropped)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    taken: set[str] = set()
    groups: list[dict] = []
    for rule in cfg.param_groups:
        pattern = re.compile(rule.pattern)
        names = [n for n, _ in named if n not in taken and len(pattern.findall(n)) > 0]
        taken.update(names)
        if names:
            groups.append(
                {
                    "names": names,
                    "lr": cfg.lr if rule.lr is None else rule.lr,
                    "weight_decay": cfg.weight_decay if rule.weight_decay is None else rule.weight_decay,
                    "pattern": rule.pattern,
                }
            )
    rest = [n for n, _ in named if n not in taken]
    if rest:
        groups.append({"names": rest, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "pattern": None})
    by_name = dict(named)
    for g in groups:
        g["params"] = [by_name[n] for n in g["names"]]
    return groups


FUSED_DEVICES = ("cpu", "cuda")


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; the fused kernel (one pass over all tensors, ~2x faster than the
    per-tensor loop on a CPU) whenever every parameter is a float tensor on a CPU or CUDA device."""
    groups = [
        {"params": g["params"], "lr": g["lr"], "weight_decay": g["weight_decay"]} for g in param_groups(model, cfg)
    ]
    params = [p for g in groups for p in g["params"]]
    fused = all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=fused or None
    )
