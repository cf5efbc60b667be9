"""Fine-grained Distribution Refinement quantities the D-FINE criterion needs (docs/dfine-losses.md §1-2).

- :func:`weighting_function`: the ``reg_max + 1`` bin values W(0..N) of an edge distribution.
- :func:`bbox2distance` / :func:`distance2bbox`: edge distances of a box relative to a reference box, in the
  units the bins use, and back.
- :func:`distance_bins`: the two neighbouring bins of a continuous distance and their interpolation weights
  (the fine-grained localisation target).

The decoder has its own weighting function and decoding (to be unified with these by the lead).
"""

from __future__ import annotations

import torch

_EPS = 1e-16


def _scalar(x: torch.Tensor | float, like: torch.Tensor | None = None) -> torch.Tensor:
    """A 0-d fp32 tensor from a float, a 0-d or a one-element tensor (no host sync)."""
    device = like.device if like is not None else None
    return torch.as_tensor(x, dtype=torch.float32, device=device).reshape(-1)[0]


def weighting_function(up: torch.Tensor | float, reg_scale: torch.Tensor | float, reg_max: int) -> torch.Tensor:
    """W(n), n = 0..N (N = ``reg_max``, even): an antisymmetric, increasing sequence with W(N/2) = 0.

    With a = |up|, c = |reg_scale| and step s = (a·c + 1)^(2/(N−2)): W(n) = sign(n − N/2)·(s^|n − N/2| − 1) for
    0 < n < N, and the outer bins W(0) = −2ac, W(N) = +2ac. Hence W(1) = −ac and W(N−1) = +ac.
    """
    if reg_max < 4 or reg_max % 2:
        raise ValueError(f"reg_max must be an even number >= 4, got {reg_max}")
    ac = _scalar(up).abs() * _scalar(reg_scale, like=_scalar(up)).abs()
    step = (ac + 1).pow(2.0 / (reg_max - 2))
    e = torch.arange(reg_max + 1, device=ac.device, dtype=torch.float32) - reg_max // 2
    values = torch.sign(e) * (step.pow(e.abs()) - 1)
    outer = torch.zeros_like(values)
    outer[0], outer[-1] = -1.0, 1.0
    is_outer = outer != 0
    return torch.where(is_outer, outer * 2 * ac, values)


def bbox2distance(ref_cxcywh: torch.Tensor, box_xyxy: torch.Tensor, reg_scale: torch.Tensor | float) -> torch.Tensor:
    """Edge distances ``[..., 4]`` (left, top, right, bottom) of ``box_xyxy`` relative to the reference box.

    d_left = (cx − x1)/(w/c) − c/2 (likewise top with y and h; right = (x2 − cx)/(w/c) − c/2): 0 when the edge
    lies on the reference's edge, positive when it lies outside. Inverse of :func:`distance2bbox`.
    """
    c = _scalar(reg_scale, like=ref_cxcywh).abs()
    cx, cy, w, h = ref_cxcywh.unbind(-1)
    x1, y1, x2, y2 = box_xyxy.unbind(-1)
    unit_x, unit_y = w / c + _EPS, h / c + _EPS
    return torch.stack([(cx - x1) / unit_x, (cy - y1) / unit_y, (x2 - cx) / unit_x, (y2 - cy) / unit_y], -1) - c / 2


def distance2bbox(ref_cxcywh: torch.Tensor, distance: torch.Tensor, reg_scale: torch.Tensor | float) -> torch.Tensor:
    """The xyxy box whose edges lie ``distance`` (left, top, right, bottom; bin units) outside the reference's."""
    c = _scalar(reg_scale, like=ref_cxcywh).abs()
    cx, cy, w, h = ref_cxcywh.unbind(-1)
    dl, dt, dr, db = distance.unbind(-1)
    return torch.stack(
        [cx - (c / 2 + dl) * w / c, cy - (c / 2 + dt) * h / c, cx + (c / 2 + dr) * w / c, cy + (c / 2 + db) * h / c], -1
    )


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
