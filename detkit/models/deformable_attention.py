"""Multi-scale deformable attention in pure PyTorch, exportable to ONNX (docs/rt-detr.md §3 and §8).

Each query predicts, per head, ``P_l`` sampling offsets on level ``l`` around its reference box (the same count on
every level in RT-DETR v1, one count per level in RT-DETRv2) and one softmax weight for each of the head's
``Σ P_l`` samples. Offsets are scaled by the box size and by the point count of their level:
``loc = ref_xy + offset / P_l · ref_wh · 0.5``.

A sample is read in one of two ways (``method``):

- ``default``: bilinear interpolation (``grid_sample``, zero padding, ``align_corners=False``; ONNX GridSample,
  opset ≥ 16);
- ``discrete``: the value of the cell the location falls in, cell index ``floor(loc · size + 0.5)`` clamped into
  the map, read with a gather (no GridSample in the exported graph). Nothing flows back into the offsets, so they
  are frozen (``requires_grad=False``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SAMPLING_METHODS = ("default", "discrete")


def points_per_level(num_points: int | Sequence[int], levels: int) -> list[int]:
    """``num_points`` as one count per level (an int means the same count on every level)."""
    points = [int(num_points)] * levels if isinstance(num_points, int) else [int(p) for p in num_points]
    if len(points) != levels or any(p < 1 for p in points):
        raise ValueError(f"num_points must be a positive count or {levels} positive counts, got {num_points}")
    return points


def _discrete_samples(value_l: torch.Tensor, locations_l: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Nearest-cell values: value_l ``[N, d, h·w]``, locations_l ``[N, Q, P, 2]`` (x, y in [0, 1]) →
    ``[N, d, Q, P]``."""
    n, d, _ = value_l.shape
    q, p = locations_l.shape[1:3]
    size = torch.tensor([w, h], dtype=locations_l.dtype, device=locations_l.device)
    cells = torch.floor(locations_l * size + 0.5)
    x = cells[..., 0].clamp(0, w - 1).long()
    y = cells[..., 1].clamp(0, h - 1).long()
    index = (y * w + x).reshape(n, 1, q * p).expand(n, d, q * p)
    return value_l.gather(2, index).reshape(n, d, q, p)


def deformable_attention_core(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    points: Sequence[int],
    method: str = "default",
) -> torch.Tensor:
    """Sampling + weighted sum.

    value ``[B, S, H, d]`` (S = Σ h·w), sampling_locations ``[B, Q, H, ΣP, 2]`` in [0, 1] (x, y), level by level
    (``points[l]`` samples of level ``l``), attention_weights ``[B, Q, H, ΣP]`` → ``[B, Q, H·d]``.
    """
    b, _, heads, d = value.shape
    q = sampling_locations.shape[1]
    # [B, S, H, d] → [B·H, d, S];  [B, Q, H, ΣP, 2] → [B·H, Q, ΣP, 2]
    value = value.permute(0, 2, 3, 1).reshape(b * heads, d, -1)
    locations = sampling_locations.transpose(1, 2).reshape(b * heads, q, -1, 2)
    samples = []
    for value_l, loc_l, (h, w) in zip(
        value.split([h * w for h, w in spatial_shapes], dim=-1), locations.split(list(points), dim=2), spatial_shapes
    ):
        if method == "discrete":
            samples.append(_discrete_samples(value_l, loc_l, h, w))
        else:
            samples.append(
                F.grid_sample(
                    value_l.reshape(b * heads, d, h, w),
                    2.0 * loc_l - 1.0,
                    mode="bilinear",
                    padding_mode="zeros",
                    align_corners=False,
                )
            )
    sampled = torch.cat(samples, dim=-1)  # [B·H, d, Q, ΣP]
    weights = attention_weights.transpose(1, 2).reshape(b * heads, 1, q, -1)
    out = (sampled * weights).sum(-1)  # [B·H, d, Q]
    return out.reshape(b, heads * d, q).transpose(1, 2)


class MSDeformableAttention(nn.Module):
    """Keys: ``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj`` (official names).

    ``num_points`` is one count for every level or one count per level; ``points`` holds the per-level counts and
    ``num_points`` their maximum (the trace pads the levels with fewer points to it, at weight 0).
    """

    def __init__(
        self,
        dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 3,
        num_points: int | Sequence[int] = 4,
        method: str = "default",
        offset_scale: float = 0.5,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        if method not in SAMPLING_METHODS:
            raise ValueError(f"method must be one of {', '.join(SAMPLING_METHODS)}, got {method!r}")
        self.points = points_per_level(num_points, num_levels)
        self.dim, self.num_heads, self.num_levels = dim, num_heads, num_levels
        self.num_points = max(self.points)
        self.method, self.offset_scale = method, offset_scale
        self.head_dim = dim // num_heads
        samples = num_heads * sum(self.points)
        self.sampling_offsets = nn.Linear(dim, samples * 2)
        self.attention_weights = nn.Linear(dim, samples)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        # 1 / P_l for each of the ΣP samples (derived from the config, so not saved)
        scale = torch.cat([torch.full((p,), 1.0 / p) for p in self.points])
        self.register_buffer("points_scale", scale, persistent=False)
        self.trace = None  # a DecoderTrace while RTDETR.record_intermediates() is active, else None (no cost)
        self.reset_parameters()
        if method == "discrete":
            self.sampling_offsets.requires_grad_(False)

    def reset_parameters(self) -> None:
        """Offsets start on 8 rays (one per head), sample k of a level at k× the ray's unit step; uniform weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        direction = torch.stack([theta.cos(), theta.sin()], -1)
        direction = direction / direction.abs().max(-1, keepdim=True).values  # [H, 2]
        steps = torch.cat([torch.arange(1, p + 1, dtype=torch.float32) for p in self.points])  # [ΣP]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_((direction[:, None, :] * steps[None, :, None]).reshape(-1))
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
        heads, total = self.num_heads, sum(self.points)
        value = self.value_proj(value).reshape(b, value.shape[1], heads, self.head_dim)
        offsets = self.sampling_offsets(query).reshape(b, q, heads, total, 2)
        weights = self.attention_weights(query).reshape(b, q, heads, total).softmax(-1)
        ref = reference_boxes[:, :, None, None, :]
        scale = self.points_scale.to(query.dtype)[:, None] * self.offset_scale
        locations = ref[..., :2] + offsets * scale * ref[..., 2:]  # [B, Q, H, ΣP, 2]
        if self.trace is not None:
            self._record(locations, weights, reference_boxes)
        out = deformable_attention_core(value, spatial_shapes, locations, weights, self.points, self.method)
        return self.output_proj(out)

    def _record(self, locations: torch.Tensor, weights: torch.Tensor, reference_boxes: torch.Tensor) -> None:
        """Store in the trace's shape ``[B, Q, H, levels, num_points, (2)]``; a level with fewer points is padded
        with the box centre at weight 0."""
        b, q, heads, _ = weights.shape
        levels, most = self.num_levels, self.num_points
        if all(p == most for p in self.points):
            loc, wts = locations.reshape(b, q, heads, levels, most, 2), weights.reshape(b, q, heads, levels, most)
        else:
            loc = reference_boxes[:, :, None, None, None, :2].expand(b, q, heads, levels, most, 2).clone()
            wts = weights.new_zeros(b, q, heads, levels, most)
            start = 0
            for lvl, p in enumerate(self.points):
                loc[:, :, :, lvl, :p] = locations[:, :, :, start : start + p]
                wts[:, :, :, lvl, :p] = weights[:, :, :, start : start + p]
                start += p
        self.trace.sampling_locations.append(loc.detach())
        self.trace.attention_weights.append(wts.detach())
