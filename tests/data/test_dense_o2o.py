"""DEIM's dense one-to-one matching: mosaic (per sample), mixup (per batch), the policy epochs, determinism, and
that a recipe without them trains exactly as before."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detkit.config.augment_section import load_augment_config
from detkit.data import load_dataset
from detkit.data.augment import EpochAugmentation, build_transform
from detkit.data.augment_config import (
    AugmentConfig,
    augment_config_from_dict,
    epoch_policy,
)
from detkit.data.augment_offline import preview_augmentations
from detkit.data.images import resize_image
from detkit.data.loader import (
    Collate,
    DetectionDataset,
    EpochLoader,
    mixup_batch,
    sample_seed,
)
from detkit.data.mosaic import mosaic_picks, paste_mosaic
from detkit.errors import DetkitError

NO_HEAVY = {"photometric_distort": {"p": 0}, "zoom_out": {"p": 0}, "iou_crop": {"p": 0}, "hflip": {"p": 0}}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """6 train / 2 val synthetic images at 96 px."""
    from detkit.data.synth import generate_synthetic

    return load_dataset(
        generate_synthetic(tmp_path_factory.mktemp("o2o") / "shapes", train=6, val=2, calib=0, test=0, imgsz=96, seed=2)
    )


def _dataset(ds, augment, imgsz=64, seed=3, epochs=10):
    return DetectionDataset(ds.split("train"), ds.class_map, imgsz, augment, train=True, total_epochs=epochs, seed=seed)


def _tile(h, w, colour, box):
    """An h x w image filled with ``colour`` with one white rectangle ``box`` (xyxy)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = colour
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    return img, np.array([box], np.float32), np.zeros(1, np.int64)


# --------------------------------------------------------------------------------------------------- the paste step
def test_paste_puts_every_tile_and_its_boxes_in_its_own_quadrant():
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)]
    tiles = [
        _tile(100, 200, colours[0], (20, 10, 60, 30)),  # short side 100 -> 50: 50 x 100, factor 0.5
        _tile(60, 40, colours[1], (0, 0, 40, 60)),  # short side 40 -> 50: 75 x 50, factor 1.25
        _tile(50, 50, colours[2], (10, 20, 30, 40)),  # unchanged
        _tile(80, 120, colours[3], (100, 60, 120, 80)),
    ]  # 50 x 75, factor 0.625
    for k, t in enumerate(tiles):
        t[2][:] = k
    canvas, boxes, labels = paste_mosaic(tiles, tile_size=50, fill=7)
    cell_h, cell_w = 75, 100  # the highest and the widest resized tile
    assert canvas.shape == (2 * cell_h, 2 * cell_w, 3) and canvas.dtype == np.uint8
    assert labels.tolist() == [0, 1, 2, 3]
    expected = np.array(
        [
            [10, 5, 30, 15],
            [cell_w + 0, 0, cell_w + 50, 75],
            [10, cell_h + 20, 30, cell_h + 40],
            [cell_w + 62.5, cell_h + 37.5, cell_w + 75, cell_h + 50],
        ]
    )
    np.testing.assert_allclose(boxes, expected, atol=1e-6)
    origins = [(0, 0), (cell_w, 0), (0, cell_h), (cell_w, cell_h)]
    sizes = [(50, 100), (75, 50), (50, 50), (50, 75)]
    for (ox, oy), (th, tw), (image, _, _), box in zip(origins, sizes, tiles, boxes):
        cell = canvas[oy : oy + cell_h, ox : ox + cell_w]
        np.testing.assert_array_equal(cell[:th, :tw], resize_image(image, (th, tw)))  # the tile, at the cell's corner
        assert np.all(cell[th:, :] == 7) and np.all(cell[:, tw:] == 7)  # the rest of the cell is the fill
        x0, y0, x1, y1 = np.round(box).astype(int)
        assert np.all(canvas[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] == 255)  # the box sits on the tile's white rectangle


def test_paste_handles_images_without_boxes_and_needs_four():
    wide = (np.full((30, 40, 3), 9, np.uint8), np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    tall = (np.full((40, 30, 3), 9, np.uint8), np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    canvas, boxes, labels = paste_mosaic([wide, tall, tall, wide], tile_size=15, fill=(1, 2, 3))
    assert canvas.shape == (40, 40, 3) and boxes.shape == (0, 4) and labels.shape == (0,)
    assert tuple(canvas[17, 5]) == (1, 2, 3) and tuple(canvas[5, 5]) == (9, 9, 9)  # below the wide tile: fill
    with pytest.raises(DetkitError, match="4 images"):
        paste_mosaic([wide] * 3, tile_size=15)


def test_mosaic_picks_are_seeded_other_images_with_probability_p():
    assert mosaic_picks(5, 2, 10, 0.0) is None
    picks = [mosaic_picks(s, 2, 10, 0.5) for s in range(400)]
    assert picks == [mosaic_picks(s, 2, 10, 0.5) for s in range(400)]  # a pure function of the seed
    chosen = [p for p in picks if p is not None]
    assert 0.4 < len(chosen) / len(picks) < 0.6
    assert all(p[0] == 2 and 2 not in p[1:] and all(0 <= i < 10 for i in p) for p in chosen)
    assert len({i for p in chosen for i in p[1:]}) == 9  # every other image is drawn
    assert mosaic_picks(1, 0, 1, 1.0) == [0, 0, 0, 0]  # a one-image split tiles the sample itself


# ------------------------------------------------------------------------------------------------ the mosaic sample
def _rect_loader(n=4):
    """``load(i)``: 120 x 160 black images with two rectangles each (red label 0, green label 1)."""

    def load(i):
        img = np.zeros((120, 160, 3), np.uint8)
        boxes = np.array([[10 + 5 * i, 10, 60 + 5 * i, 50], [90, 60 + 3 * i, 150, 110]], np.float32)
        for c, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
            img[y0:y1, x0:x1, c] = 255
        return img, boxes, np.array([0, 1], np.int64)

    return load


def test_mosaic_sample_boxes_stay_inside_valid_and_on_their_objects():
    cfg = augment_config_from_dict({**NO_HEAVY, "mosaic": {"p": 1.0}, "min_size": 2.0})
    aug = EpochAugmentation(cfg, imgsz=(96, 128))
    assert aug.tile_size == 48 and aug.mosaic is not None
    # no zoom-out and no IoU crop in a mosaic sample
    assert aug.mosaic.op_names == ("mosaic affine", "photometric_distort", "hflip", "resize 96x128")
    counts = []
    for seed in range(20):
        image, boxes, labels = aug(1, 4, seed, _rect_loader())
        assert image.shape == (96, 128, 3) and image.dtype == np.uint8
        assert boxes.dtype == np.float32 and labels.dtype == np.int64 and len(boxes) == len(labels)
        assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= 128) and np.all(boxes[:, [1, 3]] <= 96)
        assert np.all(boxes[:, 2:] - boxes[:, :2] >= 2.0)  # sanitised with min_size
        for c in (0, 1):  # every object left visible lies in a box of its class (1.5 px for interpolation)
            mask = ((image[..., c] > 200) & (image.max(axis=2) - image[..., c] < 30)).astype(np.uint8)
            _, comp, stats, _ = cv2.connectedComponentsWithStats(mask)
            big = np.nonzero((stats[1:, cv2.CC_STAT_WIDTH] >= 4) & (stats[1:, cv2.CC_STAT_HEIGHT] >= 4))[0] + 1
            ys, xs = np.nonzero(np.isin(comp, big))  # slivers under min_size are rightly dropped with their box
            b = boxes[labels == c]
            inside = (
                (xs[:, None] >= b[:, 0] - 1.5)
                & (xs[:, None] <= b[:, 2] + 1.5)
                & (ys[:, None] >= b[:, 1] - 1.5)
                & (ys[:, None] <= b[:, 3] + 1.5)
            ).any(axis=1)
            assert inside.all(), (seed, c)
        counts.append(len(boxes))
    assert np.mean(counts) > 4  # up to 8 objects per mosaic, against 2 per image


def test_mosaic_affine_follows_the_settings():
    cfg = augment_config_from_dict(
        {**NO_HEAVY, "mosaic": {"p": 1.0, "affine": {"degrees": 0, "translate": 0, "scale": [1, 1]}}}
    )
    aug = EpochAugmentation(cfg, imgsz=160, train=True)
    load = _rect_loader()
    image, boxes, labels = aug(0, 4, 11, load)
    picks = mosaic_picks(11, 0, 4, 1.0)
    canvas, b, lab = paste_mosaic([load(i) for i in picks], 80, 0)  # identity affine: only the final resize
    np.testing.assert_array_equal(image, resize_image(canvas, (160, 160)))
    sx, sy = 160 / canvas.shape[1], 160 / canvas.shape[0]
    np.testing.assert_allclose(boxes, b * [sx, sy, sx, sy], atol=1e-3)
    assert labels.tolist() == lab.tolist()


def test_targets_per_image_rise_with_mosaic(shapes):
    def mean_targets(p):
        ds = _dataset(shapes, {"mosaic": {"p": p}})
        n = []
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            n += [len(ds[i][1]["labels"]) for i in range(len(ds))]
        return np.mean(n)

    plain, mosaic = mean_targets(0.0), mean_targets(1.0)
    assert mosaic > 2 * plain, (plain, mosaic)


# ----------------------------------------------------------------------------------------- p = 0: exactly as before
def _old_dataset_sample(ds, cfg, index):
    """What the loader produced before mosaic existed: the plain pipeline seeded per (seed, epoch, index)."""
    transform = build_transform(cfg, imgsz=ds.imgsz, train=True, epoch=ds.epoch, total_epochs=ds.total_epochs)
    transform.set_random_seed(sample_seed(ds.seed, ds.epoch, index))
    return transform(*ds._load(index))


@pytest.mark.parametrize(
    "augment",
    [
        None,
        {"mosaic": {"p": 0}, "mixup": {"p": 0}},
        {"mosaic": {"p": 0.7}, "mixup": {"p": 1}, "policy_epochs": [1, 1, 2]},
    ],
)
def test_without_mosaic_the_samples_are_those_of_the_plain_pipeline(shapes, augment):
    ds = _dataset(shapes, augment)
    cfg = ds._get_transform().cfg
    for epoch in (0, 1, 2):  # with the policy [1, 1, 2] no epoch has mosaic or mixup
        ds.set_epoch(epoch)
        assert ds.mixup_now() is None
        for i in range(len(ds)):
            image, target = ds[i]
            old_image, _, old_labels = _old_dataset_sample(ds, AugmentConfig() if augment is None else cfg, i)
            assert torch.equal(image, torch.from_numpy(old_image.transpose(2, 0, 1).copy()))
            assert target["labels"].tolist() == old_labels.tolist()
    # whole batches (collate included) equal those of a section without the new keys
    without = {"stop_epoch": 2} if augment and "policy_epochs" in augment else None
    ds.set_epoch(1)
    plain = _dataset(shapes, without)
    plain.set_epoch(1)
    assert _same(_epoch_batches(ds, 1), _epoch_batches(plain, 1))


def test_default_section_dumps_mosaic_and_mixup_off():
    cfg = AugmentConfig()
    assert cfg.mosaic.p == 0 and cfg.mixup.p == 0 and cfg.policy_epochs is None
    assert epoch_policy(cfg, 0, 10) == epoch_policy(cfg, None, None)
    assert not epoch_policy(cfg, None, None).mosaic and not epoch_policy(cfg, None, None).mixup


# ------------------------------------------------------------------------------------------------------- the policy
def test_policy_switches_exactly_at_its_epochs(shapes):
    ds = _dataset(shapes, {"mosaic": {"p": 1.0}, "mixup": {"p": 1.0}, "policy_epochs": [2, 4, 6]}, epochs=8)
    seen = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        aug = ds._get_transform()
        names = aug.plain.op_names
        seen.append(
            (
                "photometric_distort" in names,
                "zoom_out" in names,
                "iou_crop" in names,
                aug.mosaic is not None,
                ds.mixup_now() is not None,
            )
        )
        n_targets = len(ds[0][1]["labels"])
        if aug.mosaic is not None:
            assert n_targets > len(ds.records[0].labels)  # p = 1: every sample is a mosaic
    off, all_on, heavy_only = (False,) * 5, (True,) * 5, (True, True, True, False, False)
    assert seen == [off, off, all_on, all_on, heavy_only, heavy_only, off, off]


def test_policy_epochs_as_fractions_and_without_a_policy():
    cfg = augment_config_from_dict({"mosaic": {"p": 0.5}, "mixup": {"p": 0.5}, "policy_epochs": [0.1, 0.5, 0.9]})
    phases = [epoch_policy(cfg, e, 20) for e in range(20)]
    assert [e for e, p in enumerate(phases) if p.mosaic] == list(range(2, 10))
    assert [e for e, p in enumerate(phases) if p.heavy] == list(range(2, 18))
    assert all(p.mixup == p.mosaic for p in phases)
    with pytest.raises(DetkitError, match="augment.policy_epochs is a fraction of the run"):
        epoch_policy(cfg, 3, None)
    # no policy: mosaic and mixup run with the heavy ops, until stop_epoch
    cfg = augment_config_from_dict({"mosaic": {"p": 0.5}, "mixup": {"p": 0.5}, "stop_epoch": 3})
    assert [epoch_policy(cfg, e, 5).mosaic for e in range(5)] == [True, True, True, False, False]
    assert [epoch_policy(cfg, e, 5).heavy for e in range(5)] == [True, True, True, False, False]
    ok = augment_config_from_dict({"policy_epochs": [4, 64, 117], "stop_epoch": 117})  # consistent: accepted
    assert ok.policy_epochs == [4, 64, 117]


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"policy_epochs": [4, 64, 117], "stop_epoch": 71}, "augment.policy_epochs: stop_epoch (71)"),
        ({"policy_epochs": [0.1, 0.5, 0.9], "stop_epoch": 90}, "augment.policy_epochs: stop_epoch (90)"),
        ({"policy_epochs": [4, 64]}, "augment.policy_epochs: give three epochs"),
        ({"policy_epochs": [4, 3, 10]}, "augment.policy_epochs: the epochs must not decrease"),
        ({"policy_epochs": [4, 0.5, 10]}, "augment.policy_epochs: give all three as epoch numbers"),
        ({"policy_epochs": [0.1, 0.5, 1.5]}, "augment.policy_epochs: a fraction of the run must be in (0, 1]"),
        ({"policy_epochs": [-1, 5, 10]}, "augment.policy_epochs: an epoch number must be >= 0"),
        ({"policy_epochs": "4,64,117"}, "augment.policy_epochs"),
        ({"mosaic": {"p": 1.5}}, "augment.mosaic.p"),
        ({"mosaic": {"tile_size": 2}}, "augment.mosaic.tile_size"),
        ({"mosaic": {"fill": 300}}, "augment.mosaic.fill: fill is a grey level or an RGB colour in 0..255"),
        ({"mosaic": {"affine": {"degrees": -5}}}, "augment.mosaic.affine.degrees"),
        ({"mosaic": {"affine": {"translate": 1.0}}}, "augment.mosaic.affine.translate"),
        ({"mosaic": {"affine": {"scale": [1.5, 0.5]}}}, "augment.mosaic.affine.scale: range [1.5, 0.5]"),
        ({"mosaic": {"affine": {"scale": [0, 1]}}}, "augment.mosaic.affine.scale: scale factors must be positive"),
        ({"mosaic": {"prob": 0.5}}, "augment.mosaic.prob"),
        ({"mixup": {"p": -0.1}}, "augment.mixup.p"),
        ({"mixup": {"beta": [0.4, 1.1]}}, "augment.mixup.beta: beta is a blending weight range within [0, 1]"),
        ({"mixup": {"beta": [0.6, 0.4]}}, "augment.mixup.beta: range [0.6, 0.4] must have low <= high"),
    ],
)
def test_bad_settings_give_one_line_naming_the_field(raw, needle):
    with pytest.raises(DetkitError) as e:
        augment_config_from_dict(raw, source="recipe.yaml")
    message = e.value.message
    assert needle in message, message
    assert "\n" not in message and "more problem" not in message


def test_bad_settings_in_a_recipe_file_name_the_file(tmp_path):
    recipe = tmp_path / "deim.yaml"
    recipe.write_text("augment:\n  mosaic: {p: 0.5}\n  policy_epochs: [4, 64, 117]\n  stop_epoch: 100\n")
    with pytest.raises(DetkitError, match="augment.policy_epochs: stop_epoch") as e:
        load_augment_config(recipe)
    assert e.value.message.startswith(f"{recipe}: invalid augment section")


# --------------------------------------------------------------------------------------------------------- mixup
def test_mixup_blends_pixels_and_concatenates_targets():
    images = torch.stack([torch.full((3, 4, 5), v, dtype=torch.uint8) for v in (0, 100, 255)])
    targets = [
        {"labels": torch.tensor([k] * (k + 1)), "boxes": torch.rand(k + 1, 4), "image_id": torch.tensor(k)}
        for k in range(3)
    ]
    mixed, out = mixup_batch(images, targets, p=1.0, beta=(0.6, 0.6), seed=0)
    assert mixed.dtype == torch.uint8 and mixed.shape == images.shape
    # image_i = round(0.6 * image_i + 0.4 * image_{i-1}); the first mixes with the last
    assert [int(mixed[i, 0, 0, 0]) for i in range(3)] == [102, 60, 193]
    assert [t["labels"].tolist() for t in out] == [[0, 2, 2, 2], [1, 1, 0], [2, 2, 2, 1, 1]]
    assert torch.equal(out[1]["boxes"], torch.cat([targets[1]["boxes"], targets[0]["boxes"]]))
    assert [int(t["image_id"]) for t in out] == [0, 1, 2]  # each image keeps its own id
    assert torch.equal(images[0], torch.zeros(3, 4, 5, dtype=torch.uint8))  # the input batch is not changed
    same, kept = mixup_batch(images, targets, p=0.0, beta=(0.5, 0.5), seed=0)
    assert same is images and kept is targets
    one, _ = mixup_batch(images[:1], targets[:1], p=1.0, beta=(0.5, 0.5), seed=0)
    assert torch.equal(one, images[:1])  # nothing to mix with
    betas = set()
    for seed in range(30):  # beta drawn per batch within its range; p = 0.5 mixes about half of the batches
        m, _ = mixup_batch(images, targets, p=0.5, beta=(0.45, 0.55), seed=seed)
        if not torch.equal(m, images):
            betas.add(round(1 - int(m[1, 0, 0, 0]) / 100, 2))
    assert len(betas) >= 8 and all(0.44 <= b <= 0.56 for b in betas)


def test_loader_mixes_batches_only_in_the_mixup_epochs(shapes):
    augment = {**NO_HEAVY, "mixup": {"p": 1.0}, "policy_epochs": [1, 2, 3]}
    ds, plain = _dataset(shapes, augment, epochs=4), _dataset(shapes, NO_HEAVY, epochs=4)
    for epoch in range(4):
        mixed = EpochLoader(ds, 3, shuffle=True, seed=1)
        ref = EpochLoader(plain, 3, shuffle=True, seed=1)
        mixed.set_epoch(epoch)
        ref.set_epoch(epoch)
        for (a, ta), (b, tb) in zip(mixed, ref):
            n_a, n_b = [len(t["labels"]) for t in ta], [len(t["labels"]) for t in tb]
            if epoch == 1:
                assert not torch.equal(a, b)
                assert n_a == [n + m for n, m in zip(n_b, n_b[-1:] + n_b[:-1])]
                lo, hi = torch.minimum(b, b.roll(1, 0)), torch.maximum(b, b.roll(1, 0))  # a blend lies between
                assert torch.all(a >= lo) and torch.all(a <= hi)
            else:
                assert torch.equal(a, b) and n_a == n_b


# ---------------------------------------------------------------------------------------------------- determinism
def _epoch_batches(ds, epoch, **loader_kw):
    loader = EpochLoader(ds, 2, shuffle=True, seed=7, **loader_kw)
    loader.set_epoch(epoch)
    return [(imgs, [(int(t["image_id"]), t["labels"].tolist(), t["boxes"]) for t in tg]) for imgs, tg in loader]


def _same(a, b):
    return len(a) == len(b) and all(
        torch.equal(x[0], y[0])
        and [t[:2] for t in x[1]] == [t[:2] for t in y[1]]
        and all(torch.equal(p[2], q[2]) for p, q in zip(x[1], y[1]))
        for x, y in zip(a, b)
    )


def test_same_seed_same_batches_with_workers_and_per_rank(shapes):
    augment = {"mosaic": {"p": 0.5}, "mixup": {"p": 0.5}}
    first = _epoch_batches(_dataset(shapes, augment), 1)
    assert _same(first, _epoch_batches(_dataset(shapes, augment), 1))
    assert _same(first, _epoch_batches(_dataset(shapes, augment), 1, workers=2))
    assert not _same(first, _epoch_batches(_dataset(shapes, augment, seed=4), 1))
    assert not _same(first, _epoch_batches(_dataset(shapes, augment), 2))
    # DDP: each rank's samples are the ones a single process makes for those indices, whatever the workers
    single = _dataset(shapes, augment)
    single.set_epoch(1)
    for rank in (0, 1):
        sharded = _epoch_batches(_dataset(shapes, {"mosaic": {"p": 0.5}}), 1, rank=rank, world_size=2)
        again = _epoch_batches(_dataset(shapes, {"mosaic": {"p": 0.5}}), 1, rank=rank, world_size=2, workers=1)
        assert _same(sharded, again)
        index_of = {r.image_id: i for i, r in enumerate(single.records)}
        for images, targets in sharded:
            for image, (image_id, labels, _) in zip(images, targets):
                expected, target = single[index_of[image_id]]
                assert torch.equal(image, expected) and labels == target["labels"].tolist()
        with_mixup = _epoch_batches(_dataset(shapes, augment), 1, rank=rank, world_size=2)
        assert _same(with_mixup, _epoch_batches(_dataset(shapes, augment), 1, rank=rank, world_size=2, workers=1))


def test_collate_is_a_plain_stack_outside_the_mixup_epochs(shapes):
    ds = _dataset(shapes, {"mixup": {"p": 1.0}, "policy_epochs": [1, 2, 3]})
    batch = [ds[0], ds[1]]
    images, targets = Collate(ds)(batch)
    assert torch.equal(images, torch.stack([batch[0][0], batch[1][0]])) and targets[0] is batch[0][1]


# ------------------------------------------------------------------------------------------------------- previews
def test_preview_and_cli_show_mosaic_samples(shapes, cli, tmp_path):
    plain = preview_augmentations(shapes, NO_HEAVY, 4, tmp_path / "plain.png", imgsz=96)
    mosaic = preview_augmentations(shapes, {**NO_HEAVY, "mosaic": {"p": 1.0}}, 4, tmp_path / "mosaic.png", imgsz=96)
    a, b = cv2.imread(str(plain)), cv2.imread(str(mosaic))
    assert a.shape == b.shape == (2 * 100 + 4, 2 * 100 + 4, 3) and not np.array_equal(a, b)
    again = preview_augmentations(shapes, {**NO_HEAVY, "mosaic": {"p": 1.0}}, 4, tmp_path / "again.png", imgsz=96)
    assert again.read_bytes() == mosaic.read_bytes()
    section = tmp_path / "deim.yaml"
    section.write_text("augment:\n  mosaic: {p: 0.5}\n  mixup: {p: 0.5}\n  policy_epochs: [1, 2, 3]\n")
    r = cli(
        "data",
        "augment",
        shapes.root,
        "--recipe",
        section,
        "--preview",
        2,
        "--preview-file",
        tmp_path / "g.png",
        "--imgsz",
        64,
        "--epoch",
        1,
        "--json",
    )
    assert r.code == 0, r.text
    pipeline = json.loads(r.out)["pipeline"]
    assert pipeline[0].startswith("mosaic p=0.5: mosaic affine, photometric_distort, hflip, resize 64x64; else")
    r = cli(
        "data",
        "augment",
        shapes.root,
        "--recipe",
        section,
        "--preview",
        2,
        "--preview-file",
        tmp_path / "g.png",
        "--imgsz",
        64,
        "--epoch",
        0,
        "--json",
    )
    assert json.loads(r.out)["pipeline"] == ["hflip", "resize 64x64"]  # before e1: flip and resize only


def test_augmented_copies_can_be_mosaics(shapes, tmp_path):
    from detkit.data.augment_offline import write_augmented_dataset
    from detkit.data.coco import read_coco

    section = {**NO_HEAVY, "mosaic": {"p": 1.0}}
    result = write_augmented_dataset(shapes, section, tmp_path / "mosaics", copies=1, seed=1)
    coco = read_coco(load_dataset(result["dataset"]).split("train").annotations)
    source = read_coco(shapes.split("train").annotations)
    assert len(coco.images) == len(source.images)
    assert len(coco.annotations) > 2 * len(source.annotations)  # four images' objects per copy, fewer off-canvas
    boxes = coco.boxes_array()
    assert np.all(boxes[:, 2:] >= 1) and np.all(boxes[:, :2] >= 0) and np.all(boxes[:, :2] + boxes[:, 2:] <= 96 + 1e-4)
    again = write_augmented_dataset(shapes, section, tmp_path / "again", copies=1, seed=1)
    assert (
        Path(again["dataset"]).with_name("annotations").joinpath("train.json").read_bytes()
        == Path(result["dataset"]).with_name("annotations").joinpath("train.json").read_bytes()
    )
