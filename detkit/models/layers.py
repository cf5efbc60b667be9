"""Small building blocks shared by the backbone, encoder and decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


def make_activation(name: str | None) -> nn.Module:
    """``None`` → identity; otherwise one of relu / silu / gelu."""
    if name is None:
        return nn.Identity()
    return _ACTIVATIONS[name]()


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose affine values and statistics are buffers: y = x·w/√(var+eps) + (b − mean·w/√(var+eps)).

    The state-dict keys are those of ``nn.BatchNorm2d`` (without ``num_batches_tracked``), so weights load either way.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        state_dict.pop(prefix + "num_batches_tracked", None)  # written by a trainable BN; meaningless here
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # inference-mode batch norm: one fused kernel, and the same math as the formula above
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def freeze_batch_norms(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` below ``module`` by a :class:`FrozenBatchNorm2d` with the same values."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batch_norms(child)
    return module


class ConvNormLayer(nn.Module):
    """Conv2d (no bias, 'same' padding) → BatchNorm2d → optional activation. Keys: ``conv``, ``norm``."""

    def __init__(self, ch_in: int, ch_out: int, kernel_size: int, stride: int = 1, act: str | None = None):
        super().__init__()
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=False)
        self.norm = nn.BatchNorm2d(ch_out)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class MLP(nn.Module):
    """``num_layers`` Linear layers with ``act`` (ReLU by default) between them. Keys: ``layers.{i}``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, act: str = "relu"):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return x


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """log(x / (1 − x)) with x clipped to [0, 1] and both terms floored at ``eps``."""
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cxcy, wh = boxes[..., :2], boxes[..., 2:]
    return torch.cat([cxcy - 0.5 * wh, cxcy + 0.5 * wh], dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x0y0, x1y1 = boxes[..., :2], boxes[..., 2:]
    return torch.cat([0.5 * (x0y0 + x1y1), x1y1 - x0y0], dim=-1)
