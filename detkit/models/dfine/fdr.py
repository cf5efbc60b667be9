"""Fine-grained Distribution Refinement: the weighting function W, the integral and the distance ↔ box maps
(docs/dfine.md §5), and the criterion's fine-grained localisation targets: edge distances of a box relative to a
reference box (:func:`bbox2distance`) and their two neighbouring bins (:func:`distance_bins`,
docs/dfine-losses.md §1-2). Boxes are normalised cxcywh unless named xyxy; edge order is left, top, right, bottom.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from detkit.models.layers import box_xyxy_to_cxcywh

_EPS = 1e-16


def weighting_function(reg_max: int, up: torch.Tensor | float, reg_scale: torch.Tensor | float) -> torch.Tensor:
    """W(n), n = 0..reg_max: ``reg_max + 1`` antisymmetric values, 0 in the middle, ±a·c at n = 1 and reg_max − 1
    and ±2·a·c at the ends (a = |up|, c = |reg_scale|); the inner values grow geometrically with step
    (a·c + 1)^(2/(reg_max − 2)) away from the centre. ``up`` and ``reg_scale``: numbers or 1-element tensors."""
    if reg_max < 4 or reg_max % 2:
        raise ValueError(f"reg_max must be an even number >= 4, got {reg_max}")
    up = torch.as_tensor(up, dtype=torch.float32) if not isinstance(up, torch.Tensor) else up
    reg_scale = torch.as_tensor(reg_scale, dtype=up.dtype, device=up.device)
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


def bbox2distance(ref_cxcywh: torch.Tensor, box_xyxy: torch.Tensor, reg_scale: torch.Tensor | float) -> torch.Tensor:
    """Edge distances ``[..., 4]`` (left, top, right, bottom) of ``box_xyxy`` relative to the reference box.

    d_left = (cx − x1)/(w/c) − c/2 (likewise top with y and h; right = (x2 − cx)/(w/c) − c/2): 0 when the edge
    lies on the reference's edge, positive when it lies outside. Inverse of :func:`distance2bbox`.
    """
    c = torch.as_tensor(reg_scale, dtype=ref_cxcywh.dtype, device=ref_cxcywh.device).reshape(-1)[0].abs()
    cx, cy, w, h = ref_cxcywh.unbind(-1)
    x1, y1, x2, y2 = box_xyxy.unbind(-1)
    unit_x, unit_y = w / c + _EPS, h / c + _EPS
    return torch.stack([(cx - x1) / unit_x, (cy - y1) / unit_y, (x2 - cx) / unit_x, (y2 - cy) / unit_y], -1) - c / 2


def distance_bins(distance: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(left bin, left weight, right weight)`` of each distance between bin values ``values`` (W, increasing).

    Left bin n = (number of W ≤ d) − 1, right bin n + 1; right weight = |d − W(n)| / (|d − W(n)| + |W(n+1) − d|),
    left weight = 1 − right weight, so ``w_l·W(n) + w_r·W(n+1) = d``. Below W(0): bin 0 with left weight 1;
    at or above W(N): bins N−1, N with right weight 1. The left bin is always in [0, N − 1].
    """
    n_max = values.numel() - 1
    d = distance.float()
    below_count = torch.searchsorted(values.contiguous(), d.contiguous(), right=True)  # number of W <= d
    left = (below_count - 1).clamp(0, n_max - 1)
    w_left_val, w_right_val = values[left], values[left + 1]
    to_left, to_right = (d - w_left_val).abs(), (w_right_val - d).abs()
    w_right = to_left / (to_left + to_right).clamp(min=_EPS)
    w_right = torch.where(below_count == 0, torch.zeros_like(w_right), w_right)
    w_right = torch.where(below_count > n_max, torch.ones_like(w_right), w_right)
    return left, 1 - w_right, w_right
