"""`detkit data stats`: counts, size buckets and histograms on hand-made data; plots; CLI and bad input."""

from __future__ import annotations

import json

import numpy as np
from detkit_testing import assert_clean_error

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, read_coco
from detkit.data.stats import dataset_stats
from detkit.data.writer import DatasetWriter


def _ann(aid, image_id, cat, bbox, area=None, crowd=0):
    a = {"id": aid, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": crowd}
    if area is not None:
        a["area"] = area
    return a


def _make_dataset(root):
    cmap = ClassMap(("cat", "dog", "bird"), (3, 7, 9))
    train = CocoData(
        images=[{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 100} for i in (1, 2, 3)],
        annotations=[
            _ann(1, 1, 3, [0, 0, 10, 10]),  # small (no area: w*h = 100), aspect 1
            _ann(2, 1, 3, [10, 10, 40, 40], area=1600.0),  # medium
            _ann(3, 1, 7, [0, 0, 100, 100], area=10000.0),  # large
            _ann(4, 2, 3, [50, 20, 20, 10], area=200.0, crowd=1),  # small, crowd, aspect 2
            _ann(5, 2, 99, [0, 0, 5, 5]),  # unknown category: left out
            _ann(6, 42, 3, [0, 0, 5, 5]),  # unknown image: left out
        ],
    )
    val = CocoData(
        images=[{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64}],
        annotations=[_ann(1, 1, 7, [0, 0, 32, 8])],  # area 256: small, aspect 4
    )
    with DatasetWriter(root, cmap, name="toy") as w:
        w.write_split("train", train)
        w.write_split("val", val)
    return root


def test_counts_buckets_and_histograms_on_a_hand_made_dataset(tmp_path):
    stats = dataset_stats(_make_dataset(tmp_path / "toy"))
    tr = stats["splits"]["train"]
    assert (tr["images"], tr["boxes"], tr["empty_images"], tr["crowd_boxes"]) == (3, 4, 1, 1)
    assert tr["skipped_annotations"] == {"unknown_category": 1, "unknown_image": 1}
    assert tr["sizes"] == {"small": 2, "medium": 1, "large": 1}
    cat, dog, bird = tr["classes"]
    assert (cat["name"], cat["category_id"], cat["images"], cat["boxes"], cat["crowd"]) == ("cat", 3, 2, 3, 1)
    assert (cat["small"], cat["medium"], cat["large"]) == (2, 1, 0)
    assert (dog["images"], dog["boxes"], dog["large"]) == (1, 1, 1)
    assert (bird["images"], bird["boxes"], bird["median_size"]) == (0, 0, None)
    assert tr["boxes_per_image"] == {"mean": 4 / 3, "max": 3, "histogram": {"0": 1, "1": 1, "3": 1}}
    assert tr["size_histogram"]["[8, 16)"] == 2  # sqrt(100) = 10, sqrt(200) = 14.1
    assert tr["size_histogram"]["[32, 64)"] == 1  # 40
    assert tr["size_histogram"][">= 512"] == 0
    assert tr["aspect_histogram"]["[0.67, 1.50)"] == 3 and tr["aspect_histogram"]["[2, 4)"] == 1
    al = stats["all"]
    assert (al["images"], al["boxes"]) == (4, 5)
    assert al["aspect_histogram"][">= 4"] == 1
    assert (
        al["classes"][1]["boxes"] == 2 and al["classes"][1]["images"] == 2
    )  # same image id 1 in two splits counts twice


def test_only_requested_splits_are_counted(tmp_path):
    stats = dataset_stats(_make_dataset(tmp_path / "toy"), splits=["val"])
    assert list(stats["splits"]) == ["val"]
    assert stats["all"]["boxes"] == 1


def test_synthetic_dataset_totals_and_plots(synth_dataset, tmp_path):
    stats = dataset_stats(synth_dataset, plots=tmp_path / "plots")
    n_anns = sum(
        len(read_coco(synth_dataset / "annotations" / f"{s}.json").annotations)
        for s in ("train", "val", "calib", "test")
    )
    al = stats["all"]
    assert al["images"] == 30 and al["boxes"] == n_anns
    assert sum(c["boxes"] for c in al["classes"]) == n_anns
    assert sum(al["sizes"].values()) == n_anns == sum(al["size_histogram"].values())
    assert sum(int(k) * v for k, v in al["boxes_per_image"]["histogram"].items()) == n_anns
    names = sorted(p.rsplit("/", 1)[-1] for p in stats["plots"])
    assert names == [
        "aspect_ratios.png",
        "box_centres.png",
        "box_sizes.png",
        "class_counts.png",
        "objects_per_image.png",
    ]
    for p in stats["plots"]:
        data = open(p, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_empty_split_gives_zero_counts(tmp_path):
    with DatasetWriter(tmp_path / "e", ClassMap.from_names(["a"])) as w:
        w.write_split("train", CocoData())
    stats = dataset_stats(tmp_path / "e")
    assert stats["all"]["images"] == 0 and stats["all"]["boxes"] == 0
    assert stats["all"]["boxes_per_image"]["max"] == 0


def test_cli_table_and_json(cli, tmp_path):
    root = _make_dataset(tmp_path / "toy")
    r = cli("data", "stats", root)
    assert r.code == 0, r.text
    assert "cat" in r.out and "bird" in r.out and "large" in r.out
    assert "left out" in r.err  # the skipped annotations are reported
    r = cli("data", "stats", root / "dataset.yaml", "--json", "--plots", tmp_path / "plots")
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    assert payload["splits"]["val"]["boxes"] == 1
    assert (tmp_path / "plots" / "box_sizes.png").is_file()
    assert np.isclose(payload["all"]["boxes_per_image"]["mean"], 5 / 4)


def test_cli_bad_input(cli, tmp_path):
    root = _make_dataset(tmp_path / "toy")
    assert_clean_error(cli("data", "stats", root, "--split", "test"), "no split 'test'")
    assert_clean_error(cli("data", "stats", tmp_path / "missing"), "not found")
    (tmp_path / "file.png").write_text("x")
    assert_clean_error(cli("data", "stats", root, "--plots", tmp_path / "file.png"), "not a folder")
    (root / "annotations" / "train.json").write_text("{not json")
    assert_clean_error(cli("data", "stats", root), "train.json", "malformed JSON")
