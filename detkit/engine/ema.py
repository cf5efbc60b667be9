"""Exponential moving average of the model (docs/rt-detr.md §6.1).

decay_t = decay · (1 − exp(−t / warmups)) with t the number of updates, applied after every optimizer step
to all floating-point state-dict entries (parameters and BN running statistics); integer buffers are copied.
"""

from __future__ import annotations

import copy
import math

import torch


class ModelEMA:
    def __init__(self, model: torch.nn.Module, decay: float = 0.9999, warmups: int = 2000):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmups = warmups
        self.updates = 0

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.warmups))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        ema_state = self.module.state_dict()
        model_state = model.state_dict()
        floats_ema = [v for k, v in ema_state.items() if v.dtype.is_floating_point]
        floats_model = [model_state[k].detach() for k, v in ema_state.items() if v.dtype.is_floating_point]
        torch._foreach_lerp_(floats_ema, floats_model, 1.0 - d)  # ema = d·ema + (1−d)·model
        for k, v in ema_state.items():
            if not v.dtype.is_floating_point:
                v.copy_(model_state[k])

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = int(updates)
