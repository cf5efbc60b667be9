"""Augmentation: boxes stay right under every geometric op, the policy (probabilities, stop epoch, seeds), extra
albumentations ops, recipe loading, previews, augmented datasets, and bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from detkit_testing import assert_clean_error

from detkit.config.augment_section import load_augment_config
from detkit.data import load_dataset
from detkit.data.augment import build_transform
from detkit.data.augment_config import AugmentConfig, augment_config_from_dict, heavy_ops_active
from detkit.data.augment_ops import IoUCrop, PhotometricDistort
from detkit.data.coco import read_coco
from detkit.data.images import resize_image
from detkit.errors import DetkitError

OFF = {"photometric_distort": {"p": 0}, "zoom_out": {"p": 0}, "iou_crop": {"p": 0}, "hflip": {"p": 0}}


def _cfg(**sections):
    return augment_config_from_dict({**OFF, **sections})


def _rect_scene():
    """Black 160x240 image with three filled rectangles in pure red, green and blue; labels 0, 1, 2."""
    img = np.zeros((160, 240, 3), np.uint8)
    boxes = np.array([[20, 30, 80, 90], [110, 20, 200, 70], [140, 95, 230, 150]], dtype=np.float32)
    for c, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        img[y0:y1, x0:x1, c] = 255
    return img, boxes, np.array([0, 1, 2], dtype=np.int64)


def _pixel_box(image, channel):
    mask = (image[..., channel] > 127) & (image.sum(axis=2) - image[..., channel].astype(int) < 128)
    ys, xs = np.nonzero(mask)
    return None if len(xs) == 0 else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def _assert_boxes_cover_their_rectangles(image, boxes, labels, tol=1.5):
    assert labels.dtype == np.int64 and boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
    for box, lab in zip(boxes, labels):
        pix = _pixel_box(image, int(lab))
        assert pix is not None, "a box is left for a rectangle that is not visible"
        assert np.all(np.abs(pix - box) <= tol), (box, pix, lab)


@pytest.mark.parametrize(
    "sections",
    [
        {"hflip": {"p": 1.0}},
        {"zoom_out": {"p": 1.0}},
        {"iou_crop": {"p": 1.0}},
        {"zoom_out": {"p": 0.5}, "iou_crop": {"p": 0.8}, "hflip": {"p": 0.5}},
    ],
)
def test_boxes_stay_tight_on_the_drawn_rectangles_under_geometric_ops(sections):
    img, boxes, labels = _rect_scene()
    transform = build_transform(_cfg(**sections), imgsz=(192, 224))
    plain = boxes * [224 / 240, 192 / 160, 224 / 240, 192 / 160]  # where a bare resize puts them
    moved = 0
    for seed in range(25):
        transform.set_random_seed(seed)
        out, b, lab = transform(img, boxes, labels)
        assert out.shape == (192, 224, 3) and out.dtype == np.uint8
        _assert_boxes_cover_their_rectangles(out, b, lab)
        moved += len(b) != 3 or not np.allclose(b, plain, atol=0.01)
    assert moved > 0  # the op really moved things


def test_flip_mirrors_boxes_exactly():
    img, boxes, labels = _rect_scene()
    out, b, lab = build_transform(_cfg(hflip={"p": 1.0}), imgsz=(160, 240))(img, boxes, labels)
    expected = boxes.copy()
    expected[:, [0, 2]] = 240 - boxes[:, [2, 0]]
    np.testing.assert_allclose(b, expected, atol=1e-4)
    np.testing.assert_array_equal(out, img[:, ::-1])
    assert lab.tolist() == [0, 1, 2]


def test_zoom_out_keeps_all_boxes_and_fills_with_black():
    img, boxes, labels = _rect_scene()
    transform = build_transform(_cfg(zoom_out={"p": 1.0, "side_range": [3.0, 3.0]}), imgsz=(160, 240))
    transform.set_random_seed(1)
    out, b, lab = transform(img, boxes, labels)
    assert lab.tolist() == [0, 1, 2]
    np.testing.assert_allclose((b[:, 2:] - b[:, :2]), (boxes[:, 2:] - boxes[:, :2]) / 3, atol=0.05)
    assert (out.sum(axis=2) == 0).mean() > 0.85  # 8/9 of the canvas is the black fill


def test_iou_crop_removes_boxes_whose_centre_leaves_the_crop_with_their_labels():
    op = IoUCrop()
    h, w = 100, 200
    # normalised xyxy + one extra column, as albumentations passes labels along
    bboxes = np.array([[0.05, 0.1, 0.2, 0.3, 7], [0.5, 0.5, 0.9, 0.9, 8]], dtype=np.float64)
    out = op.apply_to_bboxes(bboxes, crop=(80, 40, 200, 100), shape=(h, w, 3))
    assert out[:, 4].tolist() == [8]
    np.testing.assert_allclose(out[0, :4], [(100 - 80) / 120, (50 - 40) / 60, (180 - 80) / 120, (90 - 40) / 60])
    img, boxes, labels = _rect_scene()
    transform = build_transform(_cfg(iou_crop={"p": 1.0}), imgsz=(160, 240))
    dropped = 0
    for seed in range(40):
        transform.set_random_seed(seed)
        _, b, lab = transform(img, boxes, labels)
        assert len(b) == len(lab) and len(set(lab.tolist())) == len(lab)
        dropped += len(lab) < 3
    assert dropped > 0


def test_eval_transform_is_the_shared_resize_only():
    img, boxes, labels = _rect_scene()
    out, b, lab = build_transform(AugmentConfig(), imgsz=(96, 128), train=False)(img, boxes, labels)
    np.testing.assert_array_equal(out, resize_image(img, (96, 128)))
    np.testing.assert_allclose(b, boxes * [128 / 240, 96 / 160, 128 / 240, 96 / 160], rtol=1e-6)
    assert build_transform(None, imgsz=64, train=False).op_names == ("resize 64x64",)


def test_background_images_and_invalid_boxes_pass_through():
    img, _, _ = _rect_scene()
    transform = build_transform(AugmentConfig(), imgsz=64)
    for seed in range(10):
        transform.set_random_seed(seed)
        out, b, lab = transform(img, np.zeros((0, 4)), np.zeros(0, np.int64))
        assert out.shape == (64, 64, 3) and b.shape == (0, 4) and lab.dtype == np.int64
    out, b, lab = build_transform(AugmentConfig(), imgsz=64, train=False)(
        img, np.array([[10, 10, 10, 50], [-20, -5, 30, 40], [200, 100, 300, 400]], float), np.array([0, 1, 2])
    )
    assert lab.tolist() == [1, 2]  # the zero-width box is dropped, the others clipped to the image
    assert b.min() >= 0 and b[:, [0, 2]].max() <= 64 and b[:, [1, 3]].max() <= 64


def test_default_pipeline_is_the_official_order_and_stop_epoch_drops_heavy_ops():
    names = build_transform(AugmentConfig(), imgsz=32).op_names
    assert names == ("photometric_distort", "zoom_out", "iou_crop", "hflip", "resize 32x32")
    cfg = augment_config_from_dict({"stop_epoch": 117})
    assert build_transform(cfg, 32, epoch=116).op_names[:3] == ("photometric_distort", "zoom_out", "iou_crop")
    assert build_transform(cfg, 32, epoch=117).op_names == ("hflip", "resize 32x32")
    frac = augment_config_from_dict({"stop_epoch": 0.975})
    assert heavy_ops_active(frac, 116, 120) and not heavy_ops_active(frac, 117, 120)
    assert heavy_ops_active(frac, None, None)  # no epoch given: the full pipeline
    with pytest.raises(DetkitError, match="number of epochs is not known"):
        build_transform(frac, 32, epoch=3)


def test_seeds_reproduce_samples_and_ops_draw_independently():
    img, boxes, labels = _rect_scene()
    transform = build_transform(_cfg(photometric_distort={"p": 0.5}, hflip={"p": 0.5}), imgsz=(160, 240))
    transform.set_random_seed(5)
    a = transform(img, boxes, labels)
    transform.set_random_seed(5)
    b = transform(img, boxes, labels)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    both = flips = colours = 0
    n = 200
    for seed in range(n):
        transform.set_random_seed(seed)
        out, bx, _ = transform(img, boxes, labels)
        flipped = bx[0, 0] > 120
        recoloured = not np.array_equal(out if not flipped else out[:, ::-1], img)
        flips += flipped
        colours += recoloured
        both += flipped and recoloured
    assert 0.35 < flips / n < 0.65 and 0.3 < colours / n < 0.65
    assert abs(both / n - (flips / n) * (colours / n)) < 0.1  # independent draws, not one shared coin


def test_photometric_distort_brightness_and_uint8():
    gray = np.full((8, 8, 3), 100, np.uint8)
    op = PhotometricDistort(
        brightness=(1.1, 1.1), contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue=(0.0, 0.0), p_each=1.0, p=1.0
    )
    out = op.apply(gray, **op.get_params())
    assert out.dtype == np.uint8 and np.all(out == 110)
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 200
    hue = PhotometricDistort(
        brightness=(1, 1), contrast=(1, 1), saturation=(1, 1), hue=(1 / 3, 1 / 3), p_each=1.0, p=1.0
    )
    params = hue.get_params() | {"permutation": None}
    shifted = hue.apply(colour, **params)
    assert shifted[0, 0].argmax() == 1  # red turned a third of the circle: green


def test_extra_albumentations_ops_by_name():
    cfg = augment_config_from_dict(
        {
            **OFF,
            "extra": [
                {"name": "Affine", "p": 1.0, "kwargs": {"rotate": [20, 20]}},
                {"name": "MotionBlur", "p": 1.0, "kwargs": {"blur_limit": 5}},
            ],
        }
    )
    img, boxes, labels = _rect_scene()
    transform = build_transform(cfg, imgsz=(160, 240))
    assert transform.op_names[-3:] == ("Affine", "MotionBlur", "resize 160x240")
    transform.set_random_seed(0)
    out, b, lab = transform(img, boxes, labels)
    assert lab.tolist() == [0, 1, 2] and lab.dtype == np.int64
    assert np.all(b[:, 2:] - b[:, :2] > boxes[:, 2:] - boxes[:, :2] - 1)  # rotated rectangles need larger boxes
    for box, lab_i in zip(b, lab):  # and each still covers the core of its rectangle
        pix = _pixel_box(out, int(lab_i))
        assert pix is not None and pix[0] >= box[0] - 2 and pix[2] <= box[2] + 2


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"extra": [{"name": "MotionBlr"}]}, "did you mean 'MotionBlur'"),
        ({"extra": [{"name": "Lambda"}]}, "unknown or unsupported"),
        ({"extra": [{"name": "__import__"}]}, "unknown or unsupported"),
        ({"extra": [{"name": "MotionBlur", "kwargs": {"blurr": 3}}]}, "'blurr' are not valid"),
        ({"extra": [{"name": "MotionBlur", "kwargs": {"blur_limit": -3}}]}, "bad arguments for 'MotionBlur'"),
        ({"extra": [{"name": "GaussNoise", "kwargs": {"p": 0.3}}]}, "op's 'p'"),
        ({"extra": [{"name": "RandomCrop"}]}, "bad arguments for 'RandomCrop'"),
        ({"zoom_out": {"p": 1.5}}, "augment.zoom_out.p"),
        ({"zoom_out": {"side_range": [0.5, 2]}}, "start at 1.0"),
        ({"iou_crop": {"min_scale": 0.9, "max_scale": 0.5}}, "low <= high"),
        ({"stop_epoch": 1.5}, "fraction of the run"),
        ({"stop_epoch": -1}, ">= 0"),
        ({"hflip": {"prob": 0.5}}, "augment.hflip.prob"),
        ({"mosaic": True}, "augment.mosaic"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_augment_sections_are_clear_errors(raw, needle):
    with pytest.raises(DetkitError) as e:
        augment_config_from_dict(raw, source="r.yaml")
    assert needle in e.value.message and e.value.message.startswith("r.yaml")


def test_load_augment_config_from_files(tmp_path):
    section = tmp_path / "section.yaml"
    section.write_text("hflip: {p: 0.0}\nstop_epoch: 5\n")
    cfg, size = load_augment_config(section)
    assert cfg.hflip.p == 0.0 and cfg.stop_epoch == 5 and size is None
    wrapped = tmp_path / "wrapped.yaml"
    wrapped.write_text("augment:\n  zoom_out: {p: 0.1}\n")
    assert load_augment_config(wrapped)[0].zoom_out.p == 0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text("augment:\n  zoom_out: {p: 2}\n")
    with pytest.raises(DetkitError, match="zoom_out.p"):
        load_augment_config(bad)
    other = tmp_path / "other.yaml"
    other.write_text("colour: red\n")
    with pytest.raises(DetkitError, match="no 'augment' section"):
        load_augment_config(other)


def test_cli_preview_grid_and_augmented_dataset(cli, synth_dataset, tmp_path):
    recipe = tmp_path / "aug.yaml"
    recipe.write_text("augment:\n  extra:\n    - {name: GaussNoise, p: 0.5}\n")
    out = tmp_path / "augmented"
    r = cli(
        "data",
        "augment",
        synth_dataset,
        "--recipe",
        recipe,
        "--preview",
        5,
        "--preview-file",
        tmp_path / "grid.png",
        "--imgsz",
        64,
        "--out",
        out,
        "--copies",
        2,
        "--split",
        "val",
        "--json",
    )
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    assert payload["pipeline"][-2:] == ["GaussNoise", "resize 64x64"]
    grid = cv2.imread(payload["preview"])
    assert grid.shape == (2 * 68 + 4, 3 * 68 + 4, 3)  # 5 tiles of 64 px in a 3-column grid with 4 px gaps
    assert payload["dataset"]["images"] == 12 and payload["dataset"]["copies"] == 2
    ds = load_dataset(out)
    assert list(ds.splits) == ["val"] and ds.class_map == load_dataset(synth_dataset).class_map
    coco = read_coco(ds.split("val").annotations)
    assert len(coco.images) == 12 and {im["augment_copy"] for im in coco.images} == {0, 1}
    for im in coco.images:
        pixels = cv2.imread(str(ds.split("val").images / im["file_name"]))
        assert pixels.shape == (64, 64, 3) == (im["height"], im["width"], 3)
    boxes = coco.boxes_array()
    assert np.all(boxes[:, 2:] >= 1) and np.all(boxes[:, :2] + boxes[:, 2:] <= 64 + 1e-4)
    # same seed, same files
    r = cli(
        "data",
        "augment",
        synth_dataset,
        "--recipe",
        recipe,
        "--imgsz",
        64,
        "--out",
        tmp_path / "again",
        "--copies",
        2,
        "--split",
        "val",
    )
    assert r.code == 0, r.text
    assert (tmp_path / "again/annotations/val.json").read_bytes() == (out / "annotations/val.json").read_bytes()


def test_cli_augment_bad_input(cli, synth_dataset, tmp_path):
    section = tmp_path / "s.yaml"
    section.write_text("extra:\n  - {name: NotAnOp}\n")
    assert_clean_error(
        cli("data", "augment", synth_dataset, "--recipe", section, "--preview", 2), "unknown or unsupported"
    )
    good = tmp_path / "g.yaml"
    good.write_text("hflip: {p: 1.0}\n")
    assert_clean_error(cli("data", "augment", synth_dataset, "--recipe", good), "nothing to do")
    assert_clean_error(
        cli("data", "augment", synth_dataset, "--recipe", good, "--preview", 0),
        "n must be a positive",
        "on the command line: --preview",
    )
    assert_clean_error(
        cli("data", "augment", synth_dataset, "--recipe", good, "--out", tmp_path / "o", "--copies", -1), "--copies"
    )
    assert not (tmp_path / "o").exists()
    assert_clean_error(
        cli("data", "augment", synth_dataset, "--recipe", good, "--preview", 2, "--split", "holdout"),
        "no split 'holdout'",
    )
    assert_clean_error(
        cli("data", "augment", synth_dataset, "--recipe", tmp_path / "missing.yaml", "--preview", 2), "not found"
    )
    assert_clean_error(
        cli("data", "augment", synth_dataset, "--recipe", good, "--preview", 2, "--preview-file", tmp_path / "x.jpg"),
        ".png",
    )
    tagged = tmp_path / "t.yaml"
    tagged.write_text("augment: !!python/object/apply:os.system ['echo hi']\n")
    assert_clean_error(cli("data", "augment", synth_dataset, "--recipe", tagged, "--preview", 2), "tag not allowed")
    from detkit.data.classmap import ClassMap
    from detkit.data.coco import CocoData
    from detkit.data.writer import DatasetWriter

    with DatasetWriter(tmp_path / "empty", ClassMap.from_names(["a"])) as w:
        w.write_split("train", CocoData())
    assert_clean_error(
        cli("data", "augment", tmp_path / "empty", "--recipe", good, "--out", tmp_path / "o2"), "no images to augment"
    )
    assert not (tmp_path / "o2").exists()


def test_recipe_sources_use_the_recipe_resolver(monkeypatch):
    import detkit.config.augment_section as recipe_mod  # the resolver as the section loader imports it

    class _Train:
        imgsz = 320

    class _WithAugment:
        augment = AugmentConfig(stop_epoch=3)
        train = _Train()

    class _WithoutAugment:
        train = _Train()

    monkeypatch.setattr(recipe_mod, "resolve_recipe", lambda source, overrides=(): _WithAugment())
    cfg, size = load_augment_config("recipe:anything")
    assert cfg.stop_epoch == 3 and size == 320
    monkeypatch.setattr(recipe_mod, "resolve_recipe", lambda source, overrides=(): _WithoutAugment())
    with pytest.raises(DetkitError, match="has no augment section"):
        load_augment_config("recipe:anything")


def _photometric_reference(
    x, brightness=None, contrast=None, saturation=None, hue=None, contrast_first=True, permutation=None
):
    """torchvision's photometric distortion written plainly in float."""
    x = x.astype(np.float64)

    def gray(v):
        return v[..., 0] * 0.299 + v[..., 1] * 0.587 + v[..., 2] * 0.114

    def adjust_contrast(v, f):
        return np.clip(v * f + gray(v).mean() * (1 - f), 0, 255)

    if brightness is not None:
        x = np.clip(x * brightness, 0, 255)
    if contrast is not None and contrast_first:
        x = adjust_contrast(x, contrast)
    if saturation is not None:
        x = np.clip(x * saturation + gray(x)[..., None] * (1 - saturation), 0, 255)
    if hue is not None:
        hsv = cv2.cvtColor((x / 255).astype(np.float32), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.mod(hsv[..., 0] + hue * 360, 360)
        x = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0, 0, 255)
    if contrast is not None and not contrast_first:
        x = adjust_contrast(x, contrast)
    return x if permutation is None else x[..., permutation]


def test_photometric_distort_matches_the_float_definition():
    from detkit.data.synth import render_scene, scene_rng

    img = render_scene(scene_rng(0, "val", 1), 96).image
    op = PhotometricDistort(p=1.0, p_each=1.0)
    op.set_random_seed(0)
    for _ in range(8):
        params = op.get_params()
        out = op.apply(img, **params)
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert np.abs(out - _photometric_reference(img, **params)).mean() < 1.5, params
