"""Random textures used by the weather corruptions: the plasma fractal (fog) and a procedural frost layer.

Both are pure functions of a :class:`numpy.random.Generator`, so a seed fixes them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def next_power_of_2(n: int) -> int:
    return 1 << max(1, math.ceil(math.log2(max(int(n), 2))))


def plasma_fractal(rng: np.random.Generator, mapsize: int = 256, wibbledecay: float = 3.0) -> np.ndarray:
    """A ``[mapsize, mapsize]`` float64 height map in [0, 1] by the diamond-square algorithm.

    Same construction as ImageNet-C / imagecorruptions' ``plasma_fractal``: the map is refined in
    steps of halving size; every new point is the mean of its four neighbours plus uniform noise whose
    amplitude shrinks by ``wibbledecay`` at each step. ``mapsize`` must be a power of two.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    grid = np.zeros((mapsize, mapsize), dtype=np.float64)
    step = mapsize
    wibble = 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        # squares: centre of each square from its four corners
        corners = grid[0:mapsize:step, 0:mapsize:step]
        total = corners + np.roll(corners, -1, axis=0)
        total = total + np.roll(total, -1, axis=1)
        grid[half:mapsize:step, half:mapsize:step] = noisy_mean(total)
        # diamonds: edge midpoints from the two adjacent corners and the two adjacent centres
        centres = grid[half:mapsize:step, half:mapsize:step]
        corners = grid[0:mapsize:step, 0:mapsize:step]
        top = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        grid[0:mapsize:step, half:mapsize:step] = noisy_mean(top)
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        grid[half:mapsize:step, 0:mapsize:step] = noisy_mean(left)
        step //= 2
        wibble /= wibbledecay
    grid -= grid.min()
    peak = grid.max()
    return grid / peak if peak > 0 else grid


def _line_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised, anti-aliased straight-line kernel of odd size ``length`` at ``angle_deg``."""
    size = length if length % 2 else length + 1
    kernel = np.zeros((size, size), dtype=np.float32)
    c = (size - 1) / 2
    dx, dy = c * math.cos(math.radians(angle_deg)), c * math.sin(math.radians(angle_deg))
    shift = 4  # sub-pixel precision bits of cv2.line
    p0 = (round((c - dx) * (1 << shift)), round((c - dy) * (1 << shift)))
    p1 = (round((c + dx) * (1 << shift)), round((c + dy) * (1 << shift)))
    cv2.line(kernel, p0, p1, 1.0, 1, cv2.LINE_AA, shift)
    return kernel / max(float(kernel.max()), 1e-6)


def frost_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A procedural frost-on-glass layer, ``[H, W, 3]`` float32 RGB in [0, 255].

    imagecorruptions blends a random crop of one of its frost photographs; we ship no images, so this layer
    imitates them: patchy coverage (a smooth plasma map: thick frost in some places, clearer glass in others),
    a milky haze, ice needles (sparse seeds smeared along random directions at three lengths, with a soft glow)
    and fine grain, tinted pale blue. Its mean level (about half of full scale) is meant to match the photographs,
    so the package's blend weights keep their effect. Feature sizes are in pixels, like the fixed-size
    photographs, and grow for images wider than 1000 px.
    """
    scale = max(1.0, max(height, width) / 1000.0)
    size = next_power_of_2(max(height, width))
    coverage = plasma_fractal(rng, size, wibbledecay=2.6)[:height, :width].astype(np.float32)
    coverage = np.clip((coverage - 0.25) / 0.5, 0.0, 1.0)
    coverage = coverage * coverage * (3 - 2 * coverage)  # smoothstep: patches with soft edges
    haze = plasma_fractal(rng, size, wibbledecay=1.8)[:height, :width].astype(np.float32)

    needles = np.zeros((height, width), dtype=np.float32)
    for length_px, density in ((9, 0.004), (21, 0.0015), (45, 0.0004)):
        length = max(3, int(round(length_px * scale)))
        for angle in rng.uniform(0.0, 180.0, size=3):
            seeds = (rng.random((height, width), dtype=np.float32) < density) * rng.uniform(
                0.5, 1.0, (height, width)
            ).astype(np.float32)
            streaks = cv2.filter2D(seeds, -1, _line_kernel(length, float(angle)), borderType=cv2.BORDER_CONSTANT)
            np.maximum(needles, streaks, out=needles)
    needles = cv2.GaussianBlur(needles, (0, 0), 0.6 * scale)
    needles = needles + 0.6 * cv2.GaussianBlur(needles, (0, 0), 2.5 * scale)  # glow
    needles /= max(float(needles.max()), 1e-6)

    grain = cv2.GaussianBlur(rng.random((height, width), dtype=np.float32), (0, 0), 0.8 * scale)
    layer = 0.12 + 0.3 * coverage + 0.2 * haze + needles * (0.4 + 0.6 * coverage) + 0.2 * (grain - 0.5)
    tint = np.asarray([0.82, 0.9, 1.0], dtype=np.float32)  # pale blue-white, as frost photographs are
    return np.clip(layer, 0.0, 1.0)[..., None] * tint * 255.0
