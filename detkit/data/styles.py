"""Six image styles that imitate COCO-O's natural distribution shifts on a rendered scene.

Each style is a pure function ``(uint8 HxWx3 RGB, numpy Generator) -> uint8 HxWx3 RGB`` that keeps the
geometry of the scene (objects stay where they are, so the clean boxes remain the labels) while removing or
changing what a detector relies on: colour, texture and edges. COCO-O orders its domains by decreasing object
detail: weather, painting, handmake, cartoon, tattoo, sketch; these styles follow the same idea.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

# COCO-O's folder names, spelled exactly like this (sic "handmake").
DOMAINS = ("sketch", "cartoon", "painting", "weather", "handmake", "tattoo")


def _noise_field(rng: np.random.Generator, hw: tuple[int, int], cells: int) -> np.ndarray:
    grid = rng.random((cells, cells), dtype=np.float32)
    return cv2.resize(grid, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 255).astype(np.uint8)


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _paper(rng: np.random.Generator, hw: tuple[int, int], tint: np.ndarray, grain: float) -> np.ndarray:
    """A paper-like sheet (float32 HxWx3): a tint, slow blotches and fine grain."""
    blotch = _noise_field(rng, hw, 5)[..., None]
    fine = rng.normal(0, grain, (hw[0], hw[1], 1)).astype(np.float32)
    return tint[None, None, :] * (0.92 + 0.08 * blotch) + fine


def sketch(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Monochrome pencil drawing: colour dodge of the grey image by its blurred negative, on paper."""
    gray = _gray(img).astype(np.float32)
    blur = cv2.GaussianBlur(255 - gray, (0, 0), rng.uniform(2.0, 4.0))
    dodge = np.clip(gray * 255.0 / np.maximum(255.0 - blur, 1.0), 0, 255)
    edges = cv2.Canny(img, 50, 130).astype(np.float32) / 255.0  # colour Canny: isoluminant edges too
    lines = dodge * (1 - 0.7 * edges)
    # harden the strokes: push light greys to paper white, keep the darker pencil marks
    lines = 255.0 * np.clip((lines / 255.0 - 0.15) / 0.8, 0, 1) ** rng.uniform(1.8, 2.6)
    paper = _paper(rng, img.shape[:2], np.array([246.0, 243.0, 235.0], np.float32), grain=6.0)
    out = paper * (lines[..., None] / 255.0)
    return _to_u8(out)


def cartoon(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat, posterised colours with bold dark outlines."""
    smooth = img
    for _ in range(2):
        smooth = cv2.bilateralFilter(smooth, 7, 60, 7)
    levels = int(rng.integers(3, 6))
    step = 256 // levels
    flat = (smooth // step) * step + step // 2
    hsv = cv2.cvtColor(flat.astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-20, 20)) % 180  # a different colour palette
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.5 + 30, 0, 255)
    flat = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    gray = cv2.medianBlur(_gray(img), 5)
    outline = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 11, 7)
    outline = cv2.erode(outline, np.ones((2, 2), np.uint8))
    return _to_u8(flat.astype(np.float32) * (outline[..., None].astype(np.float32) / 255.0))


def _motion_kernel(rng: np.random.Generator, length: int) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    return k / max(float(k.sum()), 1e-6)


def painting(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Oil painting: edge-preserving abstraction, directional brush strokes, shifted palette, canvas weave."""
    h, w = img.shape[:2]
    # edge-preserving abstraction: flattens texture into patches of paint, keeps the big contours
    abstract = cv2.medianBlur(cv2.bilateralFilter(img, 9, float(rng.uniform(60, 110)), 9), 5)
    length = max(5, int(round(h * rng.uniform(0.03, 0.05))))
    strokes = cv2.filter2D(abstract, -1, _motion_kernel(rng, length))
    # strokes follow different directions in different regions of the canvas
    other = cv2.filter2D(abstract, -1, _motion_kernel(rng, length))
    sel = (_noise_field(rng, (h, w), 4) > 0.5)[..., None]
    paint = np.where(sel, strokes, other).astype(np.float32)
    # impasto: a streaky relief of paint thickness along the strokes
    relief = cv2.filter2D(rng.normal(0, 1, (h, w)).astype(np.float32), -1, _motion_kernel(rng, length))
    paint *= (1.0 + 0.25 * relief)[..., None]
    hsv = cv2.cvtColor(_to_u8(paint), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-25, 25)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.4), 0, 255)
    paint = cv2.cvtColor(_to_u8(hsv), cv2.COLOR_HSV2RGB).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    weave = 1.0 + 0.06 * np.sin(xx * 1.7) * np.sin(yy * 1.7)
    warm = np.array([1.06, 1.0, 0.88], np.float32)
    return _to_u8(paint * weave[..., None] * warm)


def weather(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fog, rain or snow (one of them, sometimes two), with the dull light of bad weather."""
    h, w = img.shape[:2]
    out = img.astype(np.float32) * rng.uniform(0.6, 0.85)
    kinds = rng.choice(["fog", "rain", "snow"], size=int(rng.integers(1, 3)), replace=False)
    if "fog" in kinds or rng.random() < 0.5:
        density = rng.uniform(0.35, 0.65) * (0.6 + 0.4 * _noise_field(rng, (h, w), 4))[..., None]
        fog_col = np.array([215.0, 218.0, 222.0], np.float32)
        out = cv2.GaussianBlur(out, (0, 0), 1.0) * (1 - density) + fog_col * density
    if "rain" in kinds:
        layer = np.zeros((h, w), np.float32)
        n = int(h * w * rng.uniform(0.004, 0.01))
        pts = rng.integers(0, (w, h), size=(n, 2))
        layer[pts[:, 1], pts[:, 0]] = rng.uniform(0.5, 1.0, n)
        streak = int(max(7, 0.08 * h))
        k = np.zeros((streak, streak), np.float32)
        k[:, streak // 2] = 1.0
        rot = cv2.getRotationMatrix2D(((streak - 1) / 2, (streak - 1) / 2), float(rng.uniform(-25, 25)), 1.0)
        k = cv2.warpAffine(k, rot, (streak, streak))
        layer = np.clip(cv2.filter2D(layer, -1, k) * 2.5, 0, 1)
        out = out * (1 - 0.6 * layer[..., None]) + 230.0 * 0.6 * layer[..., None]
        out = cv2.GaussianBlur(out, (0, 0), 0.8)
    if "snow" in kinds:
        layer = np.zeros((h, w), np.float32)
        n = int(h * w * rng.uniform(0.003, 0.008))
        pts = rng.integers(0, (w, h), size=(n, 2))
        for r in (1, 2):
            sel = pts[rng.random(n) < (0.7 if r == 1 else 0.3)]
            for x, y in sel:
                cv2.circle(layer, (int(x), int(y)), r, 1.0, -1, cv2.LINE_AA)
        layer = cv2.GaussianBlur(layer, (0, 0), 0.7)
        out = out * (1 - layer[..., None]) + 250.0 * layer[..., None]
    out += rng.normal(0, rng.uniform(4, 10), out.shape).astype(np.float32)
    return _to_u8(out)


def handmake(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Clay and craft: soft pastel matter, embossed shading from a bump map, felt/paper texture."""
    h, w = img.shape[:2]
    soft = cv2.bilateralFilter(img, 7, 80, 7)
    soft = cv2.GaussianBlur(soft, (0, 0), 1.2).astype(np.float32)
    pastel = soft * 0.7 + 255.0 * 0.3
    hsv = cv2.cvtColor(_to_u8(pastel), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-15, 15)) % 180
    hsv[..., 1] *= rng.uniform(0.6, 0.9)
    pastel = cv2.cvtColor(_to_u8(hsv), cv2.COLOR_HSV2RGB).astype(np.float32)
    # bump map from the blurred luminance: lit from a random direction, like modelled matter
    bump = cv2.GaussianBlur(_gray(img).astype(np.float32), (0, 0), 2.5)
    gx = cv2.Sobel(bump, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(bump, cv2.CV_32F, 0, 1, ksize=3)
    ang = rng.uniform(0, 2 * np.pi)
    light = 1.0 + np.clip((gx * np.cos(ang) + gy * np.sin(ang)) / 120.0, -0.45, 0.45)
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.7)
    texture = 1.0 + 0.08 * fibres + 0.06 * (_noise_field(rng, (h, w), 12) - 0.5)
    return _to_u8(pastel * (light * texture)[..., None])


_SKIN = np.array([[233, 190, 160], [224, 172, 135], [198, 134, 98], [160, 105, 75], [110, 72, 52]], np.float32)


def tattoo(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink on skin: the scene's outlines and dark shading tattooed in blue-black ink on textured skin."""
    h, w = img.shape[:2]
    skin_col = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    skin = skin_col[None, None, :] * (0.9 + 0.12 * _noise_field(rng, (h, w), 6))[..., None]
    redness = np.clip(_noise_field(rng, (h, w), 3) - 0.6, 0, 1)[..., None]
    skin = skin + redness * np.array([40.0, -10.0, -10.0], np.float32)
    pores = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
    skin *= (1.0 + 0.05 * pores)[..., None]

    gray = _gray(img)
    edges = cv2.Canny(cv2.GaussianBlur(img, (3, 3), 0), 50, 130)
    edges = cv2.dilate(edges, np.ones((2, 2), np.uint8)).astype(np.float32) / 255.0
    shading = np.clip((160.0 - gray.astype(np.float32)) / 160.0, 0, 1) * 0.45
    ink = np.clip(np.maximum(edges, shading), 0, 1)
    ink = cv2.GaussianBlur(ink, (0, 0), rng.uniform(0.6, 1.1))  # ink bleeds into the skin
    ink_col = np.array([30.0, 38.0, 58.0], np.float32)
    if rng.random() < 0.3:  # a coloured tattoo: dull version of the original colours
        ink_col = img.astype(np.float32) * 0.35 + ink_col * 0.65
    a = (ink * rng.uniform(0.75, 0.95))[..., None]
    return _to_u8(skin * (1 - a) + ink_col * a)


STYLES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "sketch": sketch,
    "cartoon": cartoon,
    "painting": painting,
    "weather": weather,
    "handmake": handmake,
    "tattoo": tattoo,
}


def apply_style(domain: str, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render ``img`` (uint8 HxWx3 RGB) in one of :data:`DOMAINS`."""
    try:
        fn = STYLES[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}") from None
    out = fn(np.ascontiguousarray(img), rng)
    assert out.shape == img.shape and out.dtype == np.uint8
    return out
