"""The 15 COCO-C corruptions: they change the image, get stronger with severity, keep shape and dtype, and are
deterministic given a seed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detkit.errors import DetkitError
from detkit.evaluation.robustness.corruptions import (
    BENCHMARK,
    GROUPS,
    SEVERITIES,
    corrupt,
    resolve_corruptions,
    resolve_severities,
)
from detkit.evaluation.robustness.textures import frost_texture, plasma_fractal


def scene(h: int = 192, w: int = 256) -> np.ndarray:
    """A small natural-ish test image: colour gradients, two filled shapes and some text."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.ascontiguousarray(np.stack([xx / w * 200 + 30, yy / h * 150 + 50, 120 + 0 * xx], -1).astype(np.uint8))
    cv2.circle(img, (w // 4, h // 2), h // 5, (220, 40, 40), -1)
    cv2.rectangle(img, (w // 2, h // 4), (w - 20, 3 * h // 4), (30, 160, 40), -1)
    cv2.putText(img, "detkit", (w // 3, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return img


def distortion(name: str, out: np.ndarray, ref: np.ndarray) -> float:
    """1 - correlation with the clean image; brightness (nearly an offset, which correlation ignores) by mean |diff|."""
    if name == "brightness":
        return float(np.abs(out.astype(np.float64) - ref).mean())
    return float(1.0 - np.corrcoef(out.astype(np.float64).ravel(), ref.astype(np.float64).ravel())[0, 1])


def spearman(values: list[float]) -> float:
    ranks = np.argsort(np.argsort(values)) + 1.0
    d = ranks - np.arange(1, len(values) + 1)
    n = len(values)
    return 1.0 - 6.0 * float((d**2).sum()) / (n * (n * n - 1))


IMG = scene()


def test_the_benchmark_is_the_15_corruptions_in_4_groups():
    assert len(BENCHMARK) == 15 and len(set(BENCHMARK)) == 15
    assert {k: len(v) for k, v in GROUPS.items()} == {"noise": 3, "blur": 4, "weather": 4, "digital": 4}
    assert SEVERITIES == (1, 2, 3, 4, 5)


@pytest.mark.parametrize("name", BENCHMARK)
def test_corruption_changes_the_image_and_grows_with_severity(name):
    outs = [corrupt(IMG, name, s, seed=0) for s in SEVERITIES]
    for out in outs:
        assert out.shape == IMG.shape and out.dtype == np.uint8
        assert not np.array_equal(out, IMG)
    d = [distortion(name, out, IMG) for out in outs]
    assert d[-1] > d[0], d
    assert spearman(d) >= 0.6, d  # roughly monotonic (glass_blur's severity 2 does fewer passes than 1, by definition)


@pytest.mark.parametrize("name", BENCHMARK)
def test_corruption_is_deterministic_given_a_seed_and_works_on_any_size(name):
    a = corrupt(IMG, name, 3, seed=7)
    b = corrupt(IMG, name, 3, seed=np.random.default_rng(7))
    assert np.array_equal(a, b)
    odd = np.ascontiguousarray(IMG[:37, :53])
    out = corrupt(odd, name, 5, seed=1)
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
    grey = cv2.cvtColor(IMG[:40, :64], cv2.COLOR_RGB2GRAY)
    assert corrupt(grey, name, 2, seed=0).shape == grey.shape


def test_random_corruptions_differ_between_seeds():
    for name in (
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "snow",
        "frost",
        "fog",
        "elastic_transform",
    ):
        assert not np.array_equal(corrupt(IMG, name, 3, seed=0), corrupt(IMG, name, 3, seed=1)), name


def test_noise_has_the_package_standard_deviation():
    flat = np.full((256, 256, 3), 128, dtype=np.uint8)
    out = corrupt(flat, "gaussian_noise", 1, seed=0).astype(np.float64)
    assert np.std(out / 255.0) == pytest.approx(0.08, rel=0.05)
    hit = corrupt(flat, "impulse_noise", 5, seed=0)
    frac = np.mean((hit == 0) | (hit == 255))
    assert frac == pytest.approx(0.27, abs=0.01)


def test_contrast_and_brightness_follow_their_formulas():
    out = corrupt(IMG, "contrast", 5, seed=0).astype(np.float64)
    means = IMG.reshape(-1, 3).mean(0)
    expected = np.floor(np.clip((IMG / 255.0 - means / 255.0) * 0.05 + means / 255.0, 0, 1) * 255)
    assert np.abs(out - expected).max() <= 1
    dark = np.full((40, 40, 3), 50, dtype=np.uint8)
    assert np.all(corrupt(dark, "brightness", 5, seed=0) >= 50 + 0.5 * 255 - 1)


def test_textures_are_normalised_and_seeded():
    p = plasma_fractal(np.random.default_rng(0), 64, 2.0)
    assert p.shape == (64, 64) and p.min() == 0.0 and p.max() == 1.0
    assert np.array_equal(p, plasma_fractal(np.random.default_rng(0), 64, 2.0))
    with pytest.raises(ValueError):
        plasma_fractal(np.random.default_rng(0), 48)
    frost = frost_texture(np.random.default_rng(0), 50, 70)
    assert frost.shape == (50, 70, 3) and frost.dtype == np.float32
    assert 0 <= frost.min() and frost.max() <= 255 and 40 < frost.mean() < 160


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(DetkitError, match="unknown corruption 'gausian_noise'") as e:
        corrupt(IMG, "gausian_noise", 1)
    assert "did you mean 'gaussian_noise'" in e.value.hint
    with pytest.raises(DetkitError, match="severity"):
        corrupt(IMG, "fog", 6)
    with pytest.raises(DetkitError, match="uint8"):
        corrupt(IMG.astype(np.float32), "fog", 1)


def test_selection_of_corruptions_and_severities():
    assert resolve_corruptions(None) == list(BENCHMARK)
    assert resolve_corruptions("fog, noise") == ["gaussian_noise", "shot_noise", "impulse_noise", "fog"]
    assert resolve_corruptions(["benchmark"]) == list(BENCHMARK)
    assert resolve_corruptions("motion-blur") == ["motion_blur"]
    assert resolve_corruptions("none") == []  # MMDetection's selector for "no COCO-C"
    assert resolve_corruptions(["none"]) == []  # as `detkit eval --corruptions none` passes it
    with pytest.raises(DetkitError, match="unknown corruption 'foggy'"):
        resolve_corruptions("foggy")
    with pytest.raises(DetkitError, match="no corruption"):
        resolve_corruptions(" , ")
    assert resolve_severities(None) == [1, 2, 3, 4, 5]
    assert resolve_severities("5,1,3,3") == [1, 3, 5]
    with pytest.raises(DetkitError, match="out of range"):
        resolve_severities([0])
    with pytest.raises(DetkitError, match="not an integer"):
        resolve_severities("1,x")
