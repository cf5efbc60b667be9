"""Multi-scale deformable attention in pure PyTorch (``grid_sample``), exportable to ONNX (GridSample, opset ≥ 16).

Each query predicts, per head, ``num_points`` sampling offsets on every level around its reference box and a
softmax weight for each of the levels × points samples. Offsets are scaled by the box size:
``loc = ref_xy + offset / num_points · ref_wh · 0.5``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def deformable_attention_core(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Bilinear sampling + weighted sum.

    value ``[B, S, H, d]`` (S = Σ h·w), sampling_locations ``[B, Q, H, L, P, 2]`` in [0, 1] (x, y),
    attention_weights ``[B, Q, H, L, P]`` → ``[B, Q, H·d]``.
    """
    b, _, heads, d = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    grids = 2.0 * sampling_locations - 1.0
    sizes = [h * w for h, w in spatial_shapes]
    samples = []
    for lvl, (value_l, (h, w)) in enumerate(zip(value.split(sizes, dim=1), spatial_shapes)):
        # [B, h·w, H, d] → [B·H, d, h, w]
        value_l = value_l.permute(0, 2, 3, 1).reshape(b * heads, d, h, w)
        # [B, Q, H, P, 2] → [B·H, Q, P, 2]
        grid_l = grids[:, :, :, lvl].transpose(1, 2).reshape(b * heads, q, points, 2)
        samples.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [B·H, d, Q, L·P]
    sampled = torch.stack(samples, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(b * heads, 1, q, levels * points)
    out = (sampled * weights).sum(-1)  # [B·H, d, Q]
    return out.reshape(b, heads * d, q).transpose(1, 2)


class MSDeformableAttention(nn.Module):
    """Keys: ``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj`` (official names)."""

    def __init__(self, dim: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int = 4):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.num_levels, self.num_points = dim, num_heads, num_levels, num_points
        self.head_dim = dim // num_heads
        samples = num_heads * num_levels * num_points
        self.sampling_offsets = nn.Linear(dim, samples * 2)
        self.attention_weights = nn.Linear(dim, samples)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.trace = None  # a DecoderTrace while RTDETR.record_intermediates() is active, else None (no cost)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        direction = torch.stack([theta.cos(), theta.sin()], -1)
        direction = direction / direction.abs().max(-1, keepdim=True).values
        scale = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        bias = direction[:, None, None, :] * scale[None, None, :, None]  # [H, 1, P, 2]
        bias = bias.expand(self.num_heads, self.num_levels, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_boxes: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """query ``[B, Q, D]``, reference_boxes ``[B, Q, 4]`` (cxcywh in [0, 1]), value ``[B, S, D]``."""
        b, q, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        value = self.value_proj(value).reshape(b, value.shape[1], heads, self.head_dim)
        offsets = self.sampling_offsets(query).reshape(b, q, heads, levels, points, 2)
        weights = self.attention_weights(query).reshape(b, q, heads, levels * points).softmax(-1)
        weights = weights.reshape(b, q, heads, levels, points)
        ref = reference_boxes[:, :, None, None, None, :]
        locations = ref[..., :2] + offsets * (0.5 / points) * ref[..., 2:]
        if self.trace is not None:
            self.trace.sampling_locations.append(locations.detach())
            self.trace.attention_weights.append(weights.detach())
        return self.output_proj(deformable_attention_core(value, spatial_shapes, locations, weights))
