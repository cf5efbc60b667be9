"""The 15 COCO-C benchmark corruptions at severities 1-5, after the ``imagecorruptions`` package.

Michaelis et al. (2019) corrupt COCO val2017 with bethgelab's ``imagecorruptions`` (ImageNet-C adapted to any
image size). That package does not work with today's stack (it needs ``pkg_resources``, three corruptions crash
on scikit-image >= 0.19 / NumPy 2, and it pulls the non-headless OpenCV that fights over ``cv2``), so the
definitions are re-implemented here with numpy / OpenCV / SciPy, with the package's severity parameter tables.
Every corruption takes a uint8 ``H x W x 3`` RGB image (``H x W`` grey is accepted too) of any size and returns
uint8 of the same shape; its randomness comes only from the ``seed`` / generator passed in.

Deliberate deviations from the package (also recorded in ``robustness.json`` under ``settings``):

- ``frost`` blends a procedural frost texture (:func:`~detkit.evaluation.robustness.textures.frost_texture`)
  instead of crops of the six photographs the package ships.
- ``glass_blur`` scrambles pixels with one vectorised gather per iteration (every pixel takes the value of a
  random neighbour within ``max_delta``) instead of a per-pixel Python loop of sequential swaps, which takes
  seconds per image; the effect (local scrambling between two Gaussian blurs) is the same.
- ``zoom_blur``, ``pixelate``, ``brightness``, ``jpeg_compression`` use OpenCV's resize / colour conversion /
  JPEG codec where the package uses SciPy / scikit-image / PIL: same operations, pixel-level differences only.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Sequence

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from detkit.errors import DetkitError
from detkit.evaluation.robustness.textures import frost_texture, next_power_of_2, plasma_fractal

# Bump when any definition or parameter changes: it is part of the COCO-C cache key.
CORRUPTIONS_VERSION = 1

GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
BENCHMARK: tuple[str, ...] = tuple(name for names in GROUPS.values() for name in names)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
DEVIATIONS = {
    "frost": "procedural frost texture instead of the package's six frost photographs",
    "glass_blur": "vectorised random-neighbour gather instead of sequential pixel swaps",
    "zoom_blur, pixelate, brightness, jpeg_compression": (
        "OpenCV resize / HSV / JPEG codec instead of SciPy / scikit-image / PIL"
    ),
}

Image = np.ndarray  # float32 H x W x 3 in [0, 1] inside this module


# --------------------------------------------------------------------------------------------- helpers


def _gaussian_blur(x: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """skimage/scipy-style Gaussian (radius = truncate * sigma, edge pixels repeated)."""
    radius = int(truncate * sigma + 0.5)
    return cv2.GaussianBlur(x, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_REPLICATE)


def _disk_kernel(radius: int, alias_blur: float) -> np.ndarray:
    """A normalised disk of ``radius`` smoothed by a small Gaussian (ImageNet-C's defocus kernel)."""
    half = 8 if radius <= 8 else radius
    ksize = (3, 3) if radius <= 8 else (5, 5)
    coords = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(coords, coords)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize, alias_blur)


def _motion_blur(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """Average of ``2*radius+1`` copies shifted along ``angle`` with Gaussian weights (edges repeated).

    imagecorruptions sums shifted copies in a loop; the same sum is one correlation with a sparse kernel
    holding each weight at its shift, which OpenCV computes in one call.
    """
    width = 2 * radius + 1
    i = np.arange(width)
    weights = np.exp(-(i**2) / (2 * sigma**2))
    weights /= weights.sum()
    dy = -np.ceil(i * math.sin(math.radians(angle)) - 0.5).astype(int)
    dx = -np.ceil(i * math.cos(math.radians(angle)) - 0.5).astype(int)
    # The package stops adding copies once a shift leaves the image (the weights are not renormalised).
    inside = np.cumprod((np.abs(dy) < x.shape[0]) & (np.abs(dx) < x.shape[1])).astype(bool)
    kernel = np.zeros((2 * width + 1, 2 * width + 1), dtype=np.float32)
    np.add.at(kernel, (width - dy[inside], width - dx[inside]), weights[inside].astype(np.float32))
    return cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REPLICATE)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre by ``factor`` (bilinear): the centre crop of size ceil(side / factor) is enlarged
    to about the input size and, as in the package, its top-left ``H x W`` is kept."""
    h, w = x.shape[:2]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[top : top + ch, left : left + cw]
    zoomed = cv2.resize(crop, (max(w, round(cw * factor)), max(h, round(ch * factor))), interpolation=cv2.INTER_LINEAR)
    if zoomed.ndim < x.ndim:
        zoomed = zoomed[..., None]
    return zoomed[:h, :w]


def _to_float(img: np.ndarray) -> Image:
    return img.astype(np.float32) * np.float32(1.0 / 255.0)


# --------------------------------------------------------------------------------------------- noise


def gaussian_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    c = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    x = _to_float(img)
    return x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(c)


def shot_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    c = (60, 25, 12, 5, 3)[severity - 1]
    x = _to_float(img)
    return (rng.poisson(x * c) / c).astype(np.float32)


def impulse_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    """Salt-and-pepper on a fraction ``amount`` of all values (per channel), half salt, half pepper."""
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    x = _to_float(img)
    hit = rng.random(x.shape, dtype=np.float32) < amount
    salt = rng.random(x.shape, dtype=np.float32) < 0.5
    x[hit & salt] = 1.0
    x[hit & ~salt] = 0.0
    return x


# --------------------------------------------------------------------------------------------- blur


def defocus_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    radius, alias_blur = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
    return cv2.filter2D(_to_float(img), -1, _disk_kernel(radius, alias_blur))


def glass_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    sigma, delta, iterations = ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2))[severity - 1]
    x = (_gaussian_blur(_to_float(img), sigma) * 255).astype(np.uint8)  # the package quantises here
    h, w = x.shape[:2]
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    # Only pixels at least ``delta`` from the border move, as in the package's loop bounds.
    movable = (rows > delta) & (rows <= h - delta) & (cols > delta) & (cols <= w - delta)
    for _ in range(iterations):
        dy = rng.integers(-delta, delta, size=(h, w)) * movable
        dx = rng.integers(-delta, delta, size=(h, w)) * movable
        x = x[np.clip(rows + dy, 0, h - 1), np.clip(cols + dx, 0, w - 1)]
    return _gaussian_blur(_to_float(x), sigma)


def motion_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[severity - 1]
    return _motion_blur(_to_float(img), radius, sigma, float(rng.uniform(-45, 45)))


def zoom_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    factors = (
        np.arange(1, 1.11, 0.01),
        np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.02),
        np.arange(1, 1.26, 0.02),
        np.arange(1, 1.31, 0.03),
    )[severity - 1]
    x = _to_float(img)
    out = x.copy()
    for factor in factors:
        out += _clipped_zoom(x, float(factor))
    return out / (len(factors) + 1)


# --------------------------------------------------------------------------------------------- weather


def snow(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    # (mean, std, zoom, threshold, blur radius, blur sigma, blend)
    loc, scale, zoom, threshold, radius, sigma, blend = (
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    )[severity - 1]
    x = _to_float(img)
    h, w = x.shape[:2]
    flakes = (rng.standard_normal((h, w), dtype=np.float32) * scale + loc)[..., None]
    flakes = _clipped_zoom(flakes, zoom)[..., 0]
    flakes[flakes < threshold] = 0
    flakes = _motion_blur(np.clip(flakes, 0, 1), radius, sigma, float(rng.uniform(-135, -45)))
    flakes = (np.round(flakes * 255).astype(np.uint8).astype(np.float32) / 255)[..., None]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = blend * x + (1 - blend) * np.maximum(x, grey * 1.5 + 0.5)
    return x + flakes + np.rot90(flakes, k=2)


def frost(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    keep, add = ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))[severity - 1]
    texture = frost_texture(rng, img.shape[0], img.shape[1])
    return (keep * img.astype(np.float32) + add * texture) / 255.0


def fog(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    strength, decay = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    x = _to_float(img)
    h, w = x.shape[:2]
    peak = float(x.max())
    haze = plasma_fractal(rng, next_power_of_2(max(h, w)), decay)[:h, :w, None].astype(np.float32)
    return (x + strength * haze) * (peak / (peak + strength))


def brightness(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    hsv = cv2.cvtColor(_to_float(img), cv2.COLOR_RGB2HSV)  # float: H in degrees, S and V in [0, 1]
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


# --------------------------------------------------------------------------------------------- digital


def contrast(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    x = _to_float(img)
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * c + means


def elastic_transform(img: np.ndarray, severity: int, rng: np.random.Generator) -> Image:
    """Smooth random displacement field (Gaussian-filtered uniform noise, sigma 1 % of each side)."""
    alpha = 250 * (0.05, 0.065, 0.085, 0.1, 0.12)[severity - 1]
    x = _to_float(img)
    h, w = x.shape[:2]
    sigma = (h * 0.01, w * 0.01)
    max_d = h * 0.005  # the package uses the height for both directions
    dx = gaussian_filter(rng.uniform(-max_d, max_d, (h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = gaussian_filter(rng.uniform(-max_d, max_d, (h, w)), sigma, mode="reflect", truncate=3) * alpha
    map_x = (np.arange(w, dtype=np.float32)[None, :] + dx.astype(np.float32)).astype(np.float32)
    map_y = (np.arange(h, dtype=np.float32)[:, None] + dy.astype(np.float32)).astype(np.float32)
    return cv2.remap(x, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def pixelate(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, int(w * c)), max(1, int(h * c))), interpolation=cv2.INTER_AREA)  # box filter
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def jpeg_compression(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    quality = (25, 18, 15, 10, 7)[severity - 1]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


CorruptionFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
CORRUPTION_FUNCTIONS: dict[str, CorruptionFn] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}


# --------------------------------------------------------------------------------------------- public API


def corrupt(image: np.ndarray, corruption: str, severity: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Apply one corruption at ``severity`` (1-5) to a uint8 RGB (or grey) image; uint8 of the same shape out.

    ``seed`` is an int or a :class:`numpy.random.Generator`; the same seed gives the same output.
    """
    if corruption not in CORRUPTION_FUNCTIONS:
        raise DetkitError(f"unknown corruption {corruption!r}", hint=_names_hint(corruption))
    if severity not in SEVERITIES:
        raise DetkitError(f"severity must be one of 1-5, got {severity!r}")
    img = np.asarray(image)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))):
        raise DetkitError(f"corrupt() needs a uint8 H x W x 3 (or H x W) image, got {img.dtype} {img.shape}")
    grey = img.ndim == 2 or img.shape[2] == 1
    rgb = np.ascontiguousarray(np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2) if grey else img)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = CORRUPTION_FUNCTIONS[corruption](rgb, severity, rng)
    if out.dtype != np.uint8:
        # The package truncates (np.uint8 of a float in [0, 255]); keep that for parity.
        out = (np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)
    if grey:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).reshape(img.shape)
    return out


def _names_hint(name: str) -> str:
    close = difflib.get_close_matches(name, [*BENCHMARK, *GROUPS, "benchmark", "all"], n=1)
    did_you_mean = f"did you mean {close[0]!r}? " if close else ""
    return f"{did_you_mean}choose from {', '.join(BENCHMARK)}, a group ({', '.join(GROUPS)}, benchmark) or none"


def resolve_corruptions(selection: str | Iterable[str] | None) -> list[str]:
    """Corruption names from names and group names (``noise``, ``blur``, ``weather``, ``digital``,
    ``benchmark``/``all``), as a comma-separated string or a list; ``None`` means all 15, ``"none"`` none
    (MMDetection's selector to skip COCO-C). Benchmark order."""
    if selection is None:
        return list(BENCHMARK)
    if isinstance(selection, str) and selection.strip().lower() == "none":
        return []
    items = selection.split(",") if isinstance(selection, str) else list(selection)
    if [str(v).strip().lower() for v in items] == ["none"]:  # the CLI's --corruptions none arrives as a list
        return []
    chosen: set[str] = set()
    for raw in items:
        name = str(raw).strip().lower().replace("-", "_")
        if not name:
            continue
        if name in ("benchmark", "all", "common"):
            chosen.update(BENCHMARK)
        elif name in GROUPS:
            chosen.update(GROUPS[name])
        elif name in CORRUPTION_FUNCTIONS:
            chosen.add(name)
        else:
            raise DetkitError(f"unknown corruption {str(raw).strip()!r}", hint=_names_hint(name))
    if not chosen:
        raise DetkitError("no corruption selected", hint=_names_hint(""))
    return [name for name in BENCHMARK if name in chosen]


def resolve_severities(selection: str | Sequence[int] | None) -> list[int]:
    """Severities 1-5 from a list or a comma-separated string; ``None`` means all five. Sorted, unique."""
    if selection is None:
        return list(SEVERITIES)
    items = selection.split(",") if isinstance(selection, str) else list(selection)
    out: set[int] = set()
    for raw in items:
        text = str(raw).strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise DetkitError(
                f"severity {text!r} is not an integer",
                hint="severities are 1, 2, 3, 4, 5 (e.g. 1,3,5)",
                params="severities",
            ) from None
        if value not in SEVERITIES:
            raise DetkitError(
                f"severity {value} is out of range",
                hint="severities are 1, 2, 3, 4, 5 (0 is the clean image)",
                params="severities",
            )
        out.add(value)
    if not out:
        raise DetkitError("no severity selected", hint="severities are 1, 2, 3, 4, 5")
    return sorted(out)
