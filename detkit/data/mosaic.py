"""Mosaic for DEIM's dense one-to-one matching: four images of the train split in a 2x2 grid.

:func:`mosaic_picks` decides, from a sample's seed alone, whether the sample becomes a mosaic and which three other
images join it; :func:`paste_mosaic` builds the grid: every tile is resized (aspect kept) so its shorter side is
``tile_size``, the canvas is twice the widest by twice the highest tile, filled with ``fill``, and tile k sits at
the top-left corner of cell k (0 top-left = the sample itself, 1 top-right, 2 bottom-left, 3 bottom-right). Boxes
are scaled and shifted with their tile. The random affine on the whole canvas and everything after it are ops of
the mosaic pipeline (:func:`detkit.data.augment.build_transform` with ``mosaic=True``).

albumentations' own ``Mosaic`` is not used: it crops a fixed-size window around a random centre of the grid, while
DEIM keeps the whole grid and moves it with an affine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detkit.errors import DetkitError

_MOSAIC_STREAM = 0x6D6F7361  # keeps the mosaic draws independent of the pipeline's own random streams


def mosaic_picks(seed: int, index: int, n: int, p: float) -> list[int] | None:
    """``None`` (no mosaic for this sample, probability ``1 - p``), else ``[index, a, b, c]``: the sample and three
    random other images of the ``n`` (the sample itself when it is the only one); a pure function of its inputs."""
    if p <= 0.0:
        return None
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _MOSAIC_STREAM])
    if rng.random() >= p:
        return None
    if n <= 1:
        return [index] * 4
    others = rng.integers(0, n - 1, size=3)
    others = others + (others >= index)  # skip the sample itself
    return [int(index), *(int(o) for o in others)]


def paste_mosaic(
    tiles: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    tile_size: int,
    fill: int | Sequence[int] = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four ``(uint8 HxWx3 image, boxes xyxy px [n, 4], labels [n])`` → the 2x2 grid with every tile's boxes."""
    from detkit.data.images import resize_image

    if len(tiles) != 4:
        raise DetkitError(f"a mosaic needs 4 images, got {len(tiles)}")
    if tile_size < 1:
        raise DetkitError(f"the mosaic tile size must be positive, got {tile_size}", params="tile_size")
    sizes = []  # (h, w) of each tile after the resize
    for image, _, _ in tiles:
        h, w = image.shape[:2]
        s = tile_size / min(h, w)
        sizes.append((max(1, round(h * s)), max(1, round(w * s))))
    cell_h, cell_w = max(s[0] for s in sizes), max(s[1] for s in sizes)
    canvas = np.empty((2 * cell_h, 2 * cell_w, 3), np.uint8)
    canvas[:] = np.asarray(fill, dtype=np.uint8)
    offsets = np.array([[0, 0], [cell_w, 0], [0, cell_h], [cell_w, cell_h]], dtype=np.float64)  # (x, y) per cell
    for (image, _, _), (th, tw), (ox, oy) in zip(tiles, sizes, offsets.astype(int)):
        canvas[oy : oy + th, ox : ox + tw] = resize_image(image, (th, tw))
    counts = [len(np.asarray(b).reshape(-1, 4)) for _, b, _ in tiles]
    boxes = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, 4) for _, b, _ in tiles])
    labels = np.concatenate([np.asarray(lab).reshape(-1) for _, _, lab in tiles]).astype(np.int64)
    # per-axis factors of the rounded sizes, then the cell offsets, one row per box
    factor = np.array([[tw / t[0].shape[1], th / t[0].shape[0]] for t, (th, tw) in zip(tiles, sizes)])
    factor, shift = np.repeat(factor, counts, axis=0), np.repeat(offsets, counts, axis=0)
    boxes = boxes * np.tile(factor, 2) + np.tile(shift, 2)
    return canvas, boxes, labels
