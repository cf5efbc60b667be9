"""Fine-grained Distribution Refinement: the weighting function W, the integral and the distance ↔ box maps
(docs/dfine.md §5). Boxes are normalised cxcywh; edge order is left, top, right, bottom.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from detkit.models.layers import box_xyxy_to_cxcywh


def weighting_function(reg_max: int, up: torch.Tensor, reg_scale: torch.Tensor) -> torch.Tensor:
    """W(n), n = 0..reg_max: ``reg_max + 1`` antisymmetric values, 0 in the middle, ±a·c at n = 1 and reg_max − 1
    and ±2·a·c at the ends (a = |up|, c = |reg_scale|); the inner values grow geometrically with step
    (a·c + 1)^(2/(reg_max − 2)) away from the centre. ``up`` and ``reg_scale`` are 1-element tensors."""
    bound = up.reshape(-1)[:1].abs() * reg_scale.reshape(-1)[:1].abs()  # [1]
    step = (bound + 1) ** (2.0 / (reg_max - 2))
    exps = torch.arange(1, reg_max // 2, device=up.device, dtype=up.dtype)  # 1 .. reg_max/2 − 1
    right = step**exps - 1
    left = -(step ** exps.flip(0)) + 1
    return torch.cat([-2 * bound, left, torch.zeros_like(bound), right, 2 * bound])


def integral(corners: torch.Tensor, project: torch.Tensor) -> torch.Tensor:
    """Expected distance per edge: softmax over each edge's ``reg_max + 1`` logits, dot W.
    ``corners`` ``[..., 4·(reg_max+1)]`` → ``[..., 4]``."""
    probs = F.softmax(corners.reshape(*corners.shape[:-1], 4, project.shape[0]), dim=-1)
    return F.linear(probs, project[None]).squeeze(-1)


def distance2bbox(ref: torch.Tensor, distance: torch.Tensor, reg_scale: torch.Tensor) -> torch.Tensor:
    """Edges of ``ref`` (cxcywh) moved outward by ``distance`` (l, t, r, b) in units of (box size / reg_scale),
    starting from the box's own edges → cxcywh."""
    c = reg_scale.abs()
    cx, cy, w, h = ref.unbind(-1)
    x1 = cx - (0.5 * c + distance[..., 0]) * (w / c)
    y1 = cy - (0.5 * c + distance[..., 1]) * (h / c)
    x2 = cx + (0.5 * c + distance[..., 2]) * (w / c)
    y2 = cy + (0.5 * c + distance[..., 3]) * (h / c)
    return box_xyxy_to_cxcywh(torch.stack([x1, y1, x2, y2], dim=-1))


def bbox2distance(
    ref: torch.Tensor,
    target_xyxy: torch.Tensor,
    reg_max: int,
    up: torch.Tensor,
    reg_scale: torch.Tensor,
    eps: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FGL targets: the inverse of :func:`distance2bbox` located in W.

    ``ref`` ``[n, 4]`` cxcywh (the layer-0 boxes B0), ``target_xyxy`` ``[n, 4]`` normalised xyxy →
    ``(index, weight_right, weight_left)``, each ``[n, 4]`` (float). The continuous distance φ of every edge falls
    between W[i] and W[i+1] with i = (number of W values ≤ φ) − 1; ``index`` = i, ``weight_right`` =
    |φ − W[i]| / (|φ − W[i]| + |W[i+1] − φ|), ``weight_left`` = 1 − weight_right. Below W[0]: index 0, weight_left 1;
    at or above W[reg_max]: index reg_max − eps, weight_right 1. ``index`` is clamped to [0, reg_max − eps].
    All outputs are detached.
    """
    c = reg_scale.abs()
    ref, target_xyxy = ref.detach(), target_xyxy.detach()
    cx, cy, w, h = ref.unbind(-1)
    sx, sy = w / c + 1e-16, h / c + 1e-16
    phi = torch.stack(
        [
            (cx - target_xyxy[..., 0]) / sx - 0.5 * c,
            (cy - target_xyxy[..., 1]) / sy - 0.5 * c,
            (target_xyxy[..., 2] - cx) / sx - 0.5 * c,
            (target_xyxy[..., 3] - cy) / sy - 0.5 * c,
        ],
        dim=-1,
    )
    project = weighting_function(reg_max, up, reg_scale).to(phi.dtype)
    left = torch.searchsorted(project, phi.contiguous(), right=True) - 1  # number of W ≤ φ, minus one
    below, above = left < 0, left >= reg_max
    inside = ~(below | above)
    i = left.clamp(0, reg_max - 1)
    w_left_val, w_right_val = project[i], project[i + 1]
    d_left, d_right = (phi - w_left_val).abs(), (w_right_val - phi).abs()
    weight_right = torch.where(inside, d_left / (d_left + d_right), torch.zeros_like(phi))
    weight_right = torch.where(above, torch.ones_like(phi), weight_right)
    weight_left = torch.where(inside, 1.0 - weight_right, torch.zeros_like(phi))
    weight_left = torch.where(below, torch.ones_like(phi), weight_left)
    index = torch.where(below, torch.zeros_like(phi), left.to(phi.dtype))
    index = torch.where(above, torch.full_like(phi, reg_max - eps), index)
    return index.clamp(0, reg_max - eps), weight_right, weight_left
