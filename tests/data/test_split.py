"""`detkit data split`: exact sizes, stratification, determinism, pooling, linking, bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from detkit_testing import assert_clean_error

from detkit.data import load_dataset
from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, read_coco
from detkit.data.split import assign_splits, image_strata, parse_counts, parse_ratios, split_dataset, target_sizes
from detkit.data.writer import DatasetWriter
from detkit.errors import DetkitError


def _labels_pool(n=400, seed=0):
    """Images with 0-4 boxes of 4 classes; class 3 is rare (in 12 images only)."""
    rng = np.random.default_rng(seed)
    pool = [rng.integers(0, 3, size=rng.integers(0, 5)) for _ in range(n)]
    for i in rng.choice(n, 12, replace=False):
        pool[i] = np.append(pool[i], 3)
    return pool


def test_target_sizes_are_exact():
    assert target_sizes(101, ratios={"train": 0.8, "val": 0.1, "calib": 0.05, "test": 0.05}) == {
        "train": 81,
        "val": 10,
        "calib": 5,
        "test": 5,
    }
    assert sum(target_sizes(7, ratios={"train": 1 / 3, "val": 1 / 3, "test": 1 / 3}).values()) == 7
    assert target_sizes(50, counts={"test": 10, "train": "rest", "val": 5}) == {"train": 35, "val": 5, "test": 10}
    assert list(target_sizes(50, counts={"val": 5, "train": 3})) == ["train", "val"]


def test_strata_are_the_rarest_class_and_background():
    pool = [np.array([0, 1]), np.array([1]), np.array([0, 0]), np.array([], dtype=np.int64), np.array([2, 0])]
    # images per class: 0 -> 3, 1 -> 2, 2 -> 1
    assert image_strata(pool, 3).tolist() == [1, 1, 0, 3, 2]


def test_every_class_is_shared_out_in_proportion():
    pool = _labels_pool()
    strata = image_strata(pool, 4)
    sizes = {"train": 280, "val": 60, "calib": 40, "test": 20}
    assign = assign_splits(strata, sizes, seed=3)
    assert np.bincount(assign, minlength=4).tolist() == [280, 60, 40, 20]
    for c in range(4):
        has = np.array([c in p for p in pool])
        for s, k in enumerate(sizes.values()):
            expected = has.sum() * k / len(pool)
            # within 2 images or 3 % of the class (a random split is off by about sqrt(n p (1-p)): 6 images here)
            assert abs((has & (assign == s)).sum() - expected) <= max(2, 0.03 * has.sum()), (c, s)
    rare = np.array([3 in p for p in pool])
    assert (rare & (assign == 0)).sum() in (8, 9)  # 12 rare images * 0.7
    empty = np.array([len(p) == 0 for p in pool])
    assert abs((empty & (assign == 1)).sum() - empty.sum() * 0.15) <= 1.5


def test_assignment_depends_only_on_the_seed_and_can_leave_images_over():
    strata = image_strata(_labels_pool(), 4)
    a = assign_splits(strata, {"train": 300, "val": 100}, seed=1)
    assert np.array_equal(a, assign_splits(strata, {"train": 300, "val": 100}, seed=1))
    assert not np.array_equal(a, assign_splits(strata, {"train": 300, "val": 100}, seed=2))
    part = assign_splits(strata, {"val": 40, "test": 40}, seed=1)
    assert (part == -1).sum() == 320 and (part == 0).sum() == 40


def _single_split_dataset(root, n=40):
    """All images in 'train'; image i has i % 3 boxes of class (i % 2) and a distinct colour."""
    cmap = ClassMap(("a", "b"), (10, 20))
    coco = CocoData()
    src = root.parent / f"{root.name}-src"
    src.mkdir()
    with DatasetWriter(root, cmap, name="single") as w:
        for i in range(1, n + 1):
            img = np.full((24, 32, 3), i * 5, np.uint8)
            cv2.imwrite(str(w.image_path("train", f"im{i}.png")), img)
            coco.images.append({"id": 100 + i, "file_name": f"im{i}.png", "width": 32, "height": 24})
            for k in range(i % 3):
                coco.annotations.append(
                    {
                        "id": 1000 + 10 * i + k,
                        "image_id": 100 + i,
                        "category_id": 10 if i % 2 else 20,
                        "bbox": [k, k, 5.0 + i, 4.0],
                        "area": 20.0,
                        "iscrowd": 0,
                    }
                )
        w.write_split("train", coco)
    return root


def test_single_split_dataset_keeps_ids_names_and_boxes(tmp_path):
    root = _single_split_dataset(tmp_path / "src")
    summary = split_dataset(root, tmp_path / "out", ratios="train=0.5,val=0.25,test=0.25", seed=0)
    assert {k: v["images"] for k, v in summary["splits"].items()} == {"train": 20, "val": 10, "test": 10}
    original = read_coco(root / "annotations" / "train.json")
    boxes_by_file = {
        im["file_name"]: sorted(tuple(a["bbox"]) for a in original.annotations if a["image_id"] == im["id"])
        for im in original.images
    }
    ds = load_dataset(tmp_path / "out")
    seen = []
    for name in ("train", "val", "test"):
        coco = read_coco(ds.split(name).annotations)
        for im in coco.images:
            seen.append(im["file_name"])
            assert im["id"] == 100 + int(im["file_name"][2:-4])  # ids kept
            assert (
                sorted(tuple(a["bbox"]) for a in coco.annotations if a["image_id"] == im["id"])
                == boxes_by_file[im["file_name"]]
            )
            pixels = cv2.imread(str(ds.split(name).images / im["file_name"]))
            assert pixels[0, 0, 0] == int(im["file_name"][2:-4]) * 5  # the right image file went along
    assert sorted(seen) == sorted(boxes_by_file)
    again = split_dataset(root, tmp_path / "again", ratios="train=0.5,val=0.25,test=0.25", seed=0)
    assert again["splits"] == summary["splits"]
    assert (tmp_path / "again/annotations/val.json").read_bytes() == (
        tmp_path / "out/annotations/val.json"
    ).read_bytes()


def test_images_are_hard_linked_unless_copy_is_asked(tmp_path):
    root = _single_split_dataset(tmp_path / "src", n=6)
    split_dataset(root, tmp_path / "linked", ratios="train=0.5,test=0.5")
    split_dataset(root, tmp_path / "copied", ratios="train=0.5,test=0.5", link=False)
    for folder, linked in (("linked", True), ("copied", False)):
        for p in (tmp_path / folder / "images").rglob("*.png"):
            src = root / "images" / "train" / p.name
            assert (p.stat().st_ino == src.stat().st_ino) == linked


def test_pooling_several_splits_renumbers_colliding_ids_and_names(synth_dataset, tmp_path):
    summary = split_dataset(synth_dataset, tmp_path / "out", counts="val=5,calib=5,test=5,train=rest", seed=4)
    assert {k: v["images"] for k, v in summary["splits"].items()} == {"train": 15, "val": 5, "calib": 5, "test": 5}
    ds = load_dataset(tmp_path / "out")
    n_boxes_src = sum(
        len(read_coco(synth_dataset / f"annotations/{s}.json").annotations) for s in ("train", "val", "calib", "test")
    )
    total = 0
    for name in ds.splits:
        coco = read_coco(ds.split(name).annotations)
        ids = [im["id"] for im in coco.images]
        assert len(set(ids)) == len(ids)
        assert len({a["id"] for a in coco.annotations}) == len(coco.annotations)
        assert {a["image_id"] for a in coco.annotations} <= set(ids)
        assert all(im["file_name"].split("/")[0] in ("train", "val", "calib", "test") for im in coco.images)
        for im in coco.images:
            assert (ds.split(name).images / im["file_name"]).is_file()
        total += len(coco.annotations)
    assert total == n_boxes_src


def test_parsers_reject_bad_specs():
    assert parse_ratios("train=0.7, val=0.3") == {"train": 0.7, "val": 0.3}
    assert parse_counts({"val": 3, "train": "rest"}) == {"val": 3, "train": "rest"}
    bad_ratios = [
        ("train=0.8,val=0.1", "sum to 1"),
        ("train=1.2,val=-0.2", ">= 0"),
        ("train=abc,val=1", "not a number"),
        ("trian=0.9,val=0.1", "did you mean 'train'"),
        ("train=0.5,train=0.5", "given twice"),
        ("train:0.5", "name=value"),
        ("", "no splits"),
    ]
    for spec, needle in bad_ratios:
        with pytest.raises(DetkitError) as e:
            parse_ratios(spec)
        assert needle in (e.value.message + (e.value.hint or "")), spec
    for spec, needle in [
        ("val=-1", ">= 0"),
        ("val=1.5", "whole number"),
        ("val=rest,test=rest", "only one"),
        ("dev=3", "unknown split"),
    ]:
        with pytest.raises(DetkitError, match=needle):
            parse_counts(spec)


def test_cli_split_and_json(cli, synth_dataset, tmp_path):
    r = cli(
        "data",
        "split",
        synth_dataset,
        tmp_path / "o",
        "--ratios",
        "train=0.6,val=0.2,test=0.2",
        "--seed",
        "1",
        "--json",
    )
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    assert {k: v["images"] for k, v in payload["splits"].items()} == {"train": 18, "val": 6, "test": 6}
    assert payload["dataset"] == str(tmp_path / "o" / "dataset.yaml")
    r = cli("data", "split", synth_dataset, tmp_path / "o2", "--counts", "val=4,test=4")
    assert r.code == 0, r.text
    assert "22 images were not assigned" in r.err
    assert "dataset.yaml" in r.out


def test_cli_bad_input_is_a_clean_error_and_leaves_nothing(cli, synth_dataset, tmp_path):
    out = tmp_path / "o"
    cases = [
        (("--ratios", "train=0.5,val=0.2"), "sum to 1"),
        (("--ratios", "train=0.9,dev=0.1"), "unknown split name 'dev'"),
        (("--counts", "val=-2"), ">= 0"),
        (("--counts", "val=500"), "only 30"),
        (("--ratios", "train=1", "--counts", "val=1"), "not both"),
    ]
    for args, needle in cases:
        assert_clean_error(cli("data", "split", synth_dataset, out, *args), needle)
        assert not out.exists()
    with DatasetWriter(tmp_path / "empty", ClassMap.from_names(["x"])) as w:
        w.write_split("train", CocoData())
    assert_clean_error(cli("data", "split", tmp_path / "empty", out), "no images to split")
    assert_clean_error(cli("data", "split", tmp_path / "nope", out), "not found")
    assert not out.exists()
