"""The synthetic shapes dataset: layout, exact boxes, determinism, COCO-O-style domains, bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from detkit_testing import assert_clean_error

from detkit.data import load_dataset
from detkit.data.coco import read_coco
from detkit.data.styles import DOMAINS, apply_style
from detkit.data.synth import CLASSES, generate_synthetic, render_scene, scene_rng
from detkit.errors import DetkitError


def test_fixture_dataset_has_four_splits_and_the_shape_classes(synth_dataset):
    ds = load_dataset(synth_dataset)
    assert list(ds.splits) == ["train", "val", "calib", "test"]
    assert ds.class_map.names == CLASSES
    assert ds.class_map.category_ids == (1, 2, 3, 4, 5)
    sizes = {"train": 12, "val": 6, "calib": 6, "test": 6}
    for split, n in sizes.items():
        coco = read_coco(ds.split(split).annotations)
        assert len(coco.images) == n
        assert [c["id"] for c in coco.categories] == [1, 2, 3, 4, 5]
        for img in coco.images:
            path = ds.split(split).images / img["file_name"]
            pixels = cv2.imread(str(path))
            assert pixels is not None and pixels.shape == (img["height"], img["width"], 3) == (96, 96, 3)
        boxes = coco.boxes_array()
        assert np.all(boxes[:, 2:] > 0)
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, :2] + boxes[:, 2:] <= 96)
        assert {a["category_id"] for a in coco.annotations} <= {1, 2, 3, 4, 5}


def _reference_box(owner: np.ndarray, i: int) -> list[float]:
    ys, xs = np.nonzero(owner == i)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.mark.parametrize("index", range(6))
def test_boxes_are_tight_around_the_visible_pixels_of_each_shape(index):
    scene = render_scene(scene_rng(3, "train", index), 128, empty_fraction=0.0)
    n = len(scene.labels)
    assert 1 <= n <= 8
    assert scene.image.shape == (128, 128, 3) and scene.image.dtype == np.uint8
    for i in range(n):
        assert scene.boxes[i].tolist() == _reference_box(scene.owner, i)
        assert scene.areas[i] == int((scene.owner == i).sum())


def test_scenes_cover_counts_sizes_occlusion_and_empty_images():
    counts, sides, empties = [], [], 0
    for i in range(120):
        scene = render_scene(scene_rng(1, "train", i), 128, empty_fraction=0.05)
        counts.append(len(scene.labels))
        empties += len(scene.labels) == 0
        if len(scene.labels):
            sides.extend((scene.boxes[:, 2:] - scene.boxes[:, :2]).max(axis=1) / 128)
    counts, sides = np.array(counts), np.array(sides)
    assert counts.max() <= 8 and counts.max() >= 6
    assert 1 <= empties <= 20
    assert sides.min() < 0.08 and sides.max() > 0.35  # small to large objects
    labels = np.concatenate([render_scene(scene_rng(1, "val", i), 96).labels for i in range(40)])
    assert set(labels.tolist()) == set(range(len(CLASSES)))


def test_crowded_scenes_keep_every_labelled_object_visible():
    for i in range(30):
        scene = render_scene(scene_rng(5, "train", i), 96, min_objects=8, max_objects=8)
        assert np.all(scene.areas >= 9)
        assert np.all(scene.boxes[:, 2:] > scene.boxes[:, :2])
        assert set(np.unique(scene.owner).tolist()) == set(range(-1, len(scene.labels)))


def test_same_seed_gives_identical_files_and_other_splits_do_not_change(tmp_path):
    a = generate_synthetic(tmp_path / "a", train=3, val=2, calib=0, test=1, imgsz=64, seed=7)
    b = generate_synthetic(tmp_path / "b", train=3, val=2, calib=0, test=1, imgsz=64, seed=7)
    c = generate_synthetic(tmp_path / "c", train=5, val=2, calib=0, test=1, imgsz=64, seed=7)
    d = generate_synthetic(tmp_path / "d", train=3, val=2, calib=0, test=1, imgsz=64, seed=8)
    for rel in ("annotations/train.json", "annotations/val.json", "images/train/000001.jpg", "images/test/000001.jpg"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert (a / "annotations/val.json").read_bytes() == (c / "annotations/val.json").read_bytes()
    assert (a / "images/train/000003.jpg").read_bytes() == (c / "images/train/000003.jpg").read_bytes()
    assert (a / "images/train/000001.jpg").read_bytes() != (d / "images/train/000001.jpg").read_bytes()
    assert "calib" not in load_dataset(a).splits  # a split with 0 images is left out


def test_parallel_workers_write_the_same_files(tmp_path):
    a = generate_synthetic(tmp_path / "a", train=6, val=0, calib=0, test=2, imgsz=64, seed=2, domains=True, workers=1)
    b = generate_synthetic(tmp_path / "b", train=6, val=0, calib=0, test=2, imgsz=64, seed=2, domains=True, workers=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(files) == 6 + 2 + 6 * 2 + 6 + 2 + 1  # images, domain images, domain JSONs, split JSONs, yaml
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_domains_mirror_the_test_split_in_the_coco_o_layout(synth_dataset):
    test = json.loads((synth_dataset / "annotations" / "test.json").read_text())
    clean = {
        im["file_name"]: cv2.imread(str(synth_dataset / "images" / "test" / im["file_name"])) for im in test["images"]
    }
    assert sorted(p.name for p in (synth_dataset / "coco_o").iterdir()) == sorted(DOMAINS)
    for d in DOMAINS:
        ann = json.loads((synth_dataset / "coco_o" / d / "annotations" / "instances_val2017.json").read_text())
        assert ann["images"] == test["images"]
        assert ann["annotations"] == test["annotations"]
        assert ann["categories"] == test["categories"]
        diffs = []
        for im in ann["images"]:
            styled = cv2.imread(str(synth_dataset / "coco_o" / d / "val2017" / im["file_name"]))
            assert styled.shape == clean[im["file_name"]].shape
            diffs.append(np.abs(styled.astype(np.float32) - clean[im["file_name"]]).mean())
        assert np.mean(diffs) > 12, f"{d} is too close to the clean images"


def test_sketch_is_grey_and_every_style_keeps_shape_and_dtype():
    scene = render_scene(scene_rng(0, "test", 0), 80)
    for d in DOMAINS:
        out = apply_style(d, scene.image, np.random.default_rng(0))
        assert out.shape == scene.image.shape and out.dtype == np.uint8
        assert np.array_equal(out, apply_style(d, scene.image, np.random.default_rng(0)))
    sk = apply_style("sketch", scene.image, np.random.default_rng(0)).astype(int)
    assert np.abs(sk[..., 0] - sk[..., 2]).mean() < 15  # near-monochrome paper and pencil
    with pytest.raises(ValueError, match="unknown domain"):
        apply_style("fog", scene.image, np.random.default_rng(0))


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"train": -1}, "train must be a non-negative"),
        ({"train": 0, "val": 0, "calib": 0, "test": 0}, "nothing to generate"),
        ({"imgsz": 16}, "imgsz must be an integer between 32 and 4096"),
        ({"test": 0, "domains": True}, "test is 0"),
        ({"min_objects": 5, "max_objects": 2}, "min_objects"),
    ],
)
def test_bad_arguments_raise_clear_errors_and_write_nothing(tmp_path, kwargs, needle):
    args = {"train": 2, "val": 1, "calib": 0, "test": 1, "imgsz": 64} | kwargs
    with pytest.raises(DetkitError, match=needle):
        generate_synthetic(tmp_path / "out", **args)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_dataset_and_prints_json(cli, tmp_path):
    out = tmp_path / "ds"
    r = cli(
        "data", "synth", out, "--train", 2, "--val", 1, "--calib", 1, "--test", 1, "--imgsz", 64, "--domains", "--json"
    )
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    assert payload["dataset"] == str(out / "dataset.yaml")
    assert payload["splits"] == {"train": 2, "val": 1, "calib": 1, "test": 1}
    assert payload["coco_o"] == str(out / "coco_o")
    assert (out / "coco_o" / "tattoo" / "annotations" / "instances_val2017.json").is_file()
    r = cli("data", "synth", out, "--train", 1, "--val", 0, "--calib", 0, "--test", 0, "--imgsz", 64)
    assert_clean_error(r, "not empty")
    r = cli("data", "synth", out, "--train", 1, "--val", 0, "--calib", 0, "--test", 0, "--imgsz", 64, "--overwrite")
    assert r.code == 0, r.text
    assert "dataset.yaml" in r.out
    assert len(read_coco(out / "annotations" / "train.json").images) == 1


def test_cli_bad_counts_are_clean_errors(cli, tmp_path):
    # the library names its parameters, the CLI adds the flags that set them
    assert_clean_error(
        cli("data", "synth", tmp_path / "x", "--val", "-3"), "val must be a non-negative", "on the command line: --val"
    )
    assert_clean_error(
        cli("data", "synth", tmp_path / "x", "--test", "0", "--domains"), "test is 0", "--domains, --test"
    )
    assert_clean_error(cli("data", "synth", tmp_path / "x", "--workers", "-1"), "workers must be >= 0", "--workers")
    assert not (tmp_path / "x").exists()
