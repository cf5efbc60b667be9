"""DETR-native maps: where the detection's query looked (deformable-attention sampling points × weights).

Each decoder layer's cross-attention reads, for every head, ``points`` bilinear samples on each feature level
around the query's reference box, and sums them with softmax weights (per head they sum to 1). The map of a
detection splats every sample of its query — all decoder layers that ran, all heads, levels and points — as a
Gaussian of unit mass carrying the sample's attention weight, centred on the sample's location, with a standard
deviation of half the level's stride (the footprint of one bilinear read). So the map's total mass is
layers × heads, and a region's share of it is the share of attention the query spent there.

The points come from :meth:`detkit.models.rtdetr.model.RTDETR.record_intermediates` in the same forward that produced
the detection, so this method costs one inference plus a few small matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MAX_GRID = 160  # the Gaussians are summed on a grid of at most this many cells per side, then resized


@dataclass
class SamplingPoints:
    """The last decoder layer's samples of one detection's query, for drawing (original pixels)."""

    xy: np.ndarray  # float32 [n, 2]
    weight: np.ndarray  # float32 [n]
    level: np.ndarray  # int64 [n]


def _query_samples(trace, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """locations [k, n, 2], weights [k, n], level index [n] over (layer, head, level, point) of each query."""
    loc = torch.stack([t[0, queries] for t in trace.sampling_locations], 1)  # [k, layers, heads, L, P, 2]
    w = torch.stack([t[0, queries] for t in trace.attention_weights], 1)  # [k, layers, heads, L, P]
    level = torch.arange(loc.shape[3]).view(1, 1, -1, 1).expand(loc.shape[1:5]).reshape(-1)
    return loc.reshape(len(queries), -1, 2).float().cpu(), w.reshape(len(queries), -1).float().cpu(), level


def sampling_maps(trace, queries: np.ndarray, image_hw: tuple[int, int]) -> tuple[np.ndarray, list[SamplingPoints]]:
    """Maps ``[k, H, W]`` (float32, original image size) for the queries of image 0 of a recorded forward."""
    import cv2

    h, w = image_hw
    k = len(queries)
    if k == 0:
        return np.zeros((0, h, w), np.float32), []
    q = torch.as_tensor(queries, dtype=torch.long, device=trace.sampling_locations[0].device)
    loc, weight, level = _query_samples(trace, q)
    shapes = torch.tensor(trace.spatial_shapes, dtype=torch.float32)  # [L, 2] (h_l, w_l)
    scale = min(1.0, MAX_GRID / max(h, w))
    gh, gw = max(1, round(h * scale)), max(1, round(w * scale))
    # sigma = half a level cell, in grid cells: 0.5 · (grid side / level side)
    sig_y, sig_x = (0.5 * gh / shapes[level, 0]), (0.5 * gw / shapes[level, 1])  # [n]
    ys = torch.arange(gh, dtype=torch.float32) + 0.5
    xs = torch.arange(gw, dtype=torch.float32) + 0.5
    gy = torch.exp(-0.5 * ((ys[None, None] - loc[..., 1:2] * gh) / sig_y[None, :, None]) ** 2)  # [k, n, gh]
    gx = torch.exp(-0.5 * ((xs[None, None] - loc[..., 0:1] * gw) / sig_x[None, :, None]) ** 2)  # [k, n, gw]
    mass = weight / (2 * np.pi * sig_x * sig_y)[None]  # unit-mass Gaussians carrying the attention weight
    grid = torch.einsum("knh,kn,knw->khw", gy, mass, gx).numpy()
    maps = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in grid]).astype(np.float32)
    last = loc.shape[1] // len(trace.sampling_locations)
    points = [
        SamplingPoints(
            (loc[i, -last:] * torch.tensor([w, h])).numpy().astype(np.float32),
            weight[i, -last:].numpy().astype(np.float32),
            level[-last:].numpy().astype(np.int64),
        )
        for i in range(k)
    ]
    return np.maximum(maps, 0.0), points
