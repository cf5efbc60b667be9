"""detkit data convert: lossless COCO <-> YOLO <-> VOC round trips, sidecar-free defaults, auto-detection, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detkit.data import load_dataset
from detkit.data.classmap import ClassMap
from detkit.data.coco import read_coco
from detkit.data.convert import convert_dataset
from detkit.data.formats.detect import detect_format
from detkit.data.writer import DatasetWriter


def _rich_copy(synth: Path, out: Path) -> Path:
    """The synthetic dataset with everything a round trip can lose: category ids that are neither 1..K nor sorted
    like the class order, scattered image and annotation ids, crowd regions, a difficult flag, segmentation-style
    areas, sub-pixel boxes and an empty (background) image."""
    spec = load_dataset(synth)
    new_ids = {1: 50, 2: 7, 3: 31, 4: 12, 5: 90}
    cmap = ClassMap(spec.class_map.names, tuple(new_ids[c] for c in spec.class_map.category_ids))
    with DatasetWriter(out, cmap, name="rich") as w:
        for split, s in spec.splits.items():
            coco = read_coco(s.annotations)
            for img in coco.images:
                w.add_image_file(split, img["file_name"], s.images / img["file_name"])
                img["id"] = img["id"] * 7 + 3
            for k, ann in enumerate(coco.annotations):
                ann["id"] = ann["id"] * 3 + 1
                ann["image_id"] = ann["image_id"] * 7 + 3
                ann["category_id"] = new_ids[ann["category_id"]]
                x, y, bw, bh = ann["bbox"]
                ann["bbox"] = [x + 0.37, y + 0.141, bw - 0.5, bh - 0.333]
                ann["iscrowd"] = int(k % 5 == 2)
            first = coco.images[0]
            shutil.copyfile(s.images / first["file_name"], w.image_path(split, "background.png"))
            coco.images.append(
                {"id": 999, "file_name": "background.png", "width": first["width"], "height": first["height"]}
            )
            w.write_split(split, coco)
    return out


def _assert_same(a_root: Path, b_root: Path, keep_difficult: bool = False) -> None:
    a, b = load_dataset(a_root), load_dataset(b_root)
    assert a.class_map == b.class_map  # class order and category ids
    assert list(a.splits) == list(b.splits)
    for split in a.splits:
        ca, cb = read_coco(a.split(split).annotations), read_coco(b.split(split).annotations)
        key = lambda im: (im["id"], im["file_name"], im["width"], im["height"])  # noqa: E731
        assert sorted(map(key, ca.images)) == sorted(map(key, cb.images))
        for im in cb.images:  # the image files came along
            assert (b.split(split).images / im["file_name"]).is_file()
        anns_a = {x["id"]: x for x in ca.annotations}
        anns_b = {x["id"]: x for x in cb.annotations}
        assert anns_a.keys() == anns_b.keys()
        ids = sorted(anns_a)
        for field in ("image_id", "category_id", "iscrowd"):
            assert [anns_a[i][field] for i in ids] == [anns_b[i][field] for i in ids], field
        np.testing.assert_allclose([anns_b[i]["area"] for i in ids], [anns_a[i]["area"] for i in ids], rtol=1e-9)
        np.testing.assert_allclose(
            [anns_b[i]["bbox"] for i in ids], [anns_a[i]["bbox"] for i in ids], rtol=1e-6, atol=1e-9
        )  # atol: coordinates at 0
        if keep_difficult:
            assert [anns_a[i].get("difficult") for i in ids] == [anns_b[i].get("difficult") for i in ids]


@pytest.fixture(scope="module")
def rich(synth_dataset, tmp_path_factory):
    return _rich_copy(synth_dataset, tmp_path_factory.mktemp("rich") / "rich")


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_round_trip_through_format_is_lossless(rich, tmp_path, fmt):
    mid = convert_dataset(rich, tmp_path / fmt, to=fmt)
    assert mid.src_format == "coco" and mid.to == fmt
    back = convert_dataset(tmp_path / fmt, tmp_path / "back", to="coco")
    assert back.src_format == fmt
    _assert_same(rich, tmp_path / "back")
    coco = read_coco(load_dataset(tmp_path / "back").split("train").annotations)
    assert any(a["iscrowd"] for a in coco.annotations)
    assert 999 in {im["id"] for im in coco.images}


def test_round_trip_on_plain_synthetic_dataset(synth_dataset, tmp_path):
    for fmt in ("yolo", "voc"):
        convert_dataset(synth_dataset, tmp_path / fmt, to=fmt)
        convert_dataset(tmp_path / fmt, tmp_path / f"{fmt}_back", to="coco")
        _assert_same(synth_dataset, tmp_path / f"{fmt}_back")


def test_voc_keeps_difficult_as_its_own_flag(rich, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(rich, src)
    ann_file = src / "annotations" / "val.json"
    coco = json.loads(ann_file.read_text())
    coco["annotations"][0]["difficult"] = 1
    ann_file.write_text(json.dumps(coco))
    convert_dataset(src, tmp_path / "voc", to="voc")
    xml = next((tmp_path / "voc" / "Annotations").rglob("*.xml")).read_text()
    assert "<difficult>" in xml
    convert_dataset(tmp_path / "voc", tmp_path / "back")
    _assert_same(src, tmp_path / "back", keep_difficult=True)
    back = read_coco(tmp_path / "back" / "annotations" / "val.json")
    first = {a["id"]: a for a in back.annotations}[coco["annotations"][0]["id"]]
    assert first["difficult"] == 1 and first["iscrowd"] == coco["annotations"][0]["iscrowd"]


def test_yolo_layout_is_what_ultralytics_expects(rich, tmp_path):
    convert_dataset(rich, tmp_path / "y", to="yolo")
    import yaml

    doc = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    assert doc["names"] == dict(enumerate(load_dataset(rich).class_map.names))
    assert doc["train"] == "images/train" and "path" not in doc
    labels = sorted((tmp_path / "y" / "labels" / "train").glob("*.txt"))
    images = sorted((tmp_path / "y" / "images" / "train").iterdir())
    assert [p.stem for p in labels] == [p.stem for p in images]
    assert (tmp_path / "y" / "labels" / "train" / "background.txt").read_text() == ""
    rows = np.loadtxt(labels[0], ndmin=2)
    assert rows.shape[1] == 5 and np.all((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1))


def _yolo_by_hand(root: Path, names=("cat", "dog"), lines: dict[str, str] | None = None) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for stem, size in (("a", (40, 20)), ("b", (10, 10)), ("c", (16, 32))):
        Image.new("RGB", size, (120, 30, 200)).save(root / "images" / "train" / f"{stem}.png")
    lines = lines if lines is not None else {"a": "0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.2\n", "b": "1 0.5 0.5 1 1\n"}
    for stem, text in lines.items():
        (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {list(names)}\n")
    return root


def test_yolo_without_sidecar_uses_documented_defaults(tmp_path):
    src = _yolo_by_hand(tmp_path / "y")
    # a segment line (ultralytics polygon format) becomes its bounding box
    (src / "labels" / "train" / "c.txt").write_text("0 0.25 0.25 0.75 0.25 0.75 0.5 0.25 0.5\n")
    res = convert_dataset(src, tmp_path / "coco")
    assert res.category_ids == [1, 2] and res.class_names == ["cat", "dog"]
    coco = read_coco(tmp_path / "coco" / "annotations" / "train.json")
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in coco.images] == [
        (1, "a.png", 40, 20),
        (2, "b.png", 10, 10),
        (3, "c.png", 16, 32),
    ]
    assert [a["id"] for a in coco.annotations] == [1, 2, 3, 4]
    np.testing.assert_allclose(
        [a["bbox"] for a in coco.annotations], [[10, 5, 20, 10], [8, 3, 4, 4], [0, 0, 10, 10], [4, 8, 8, 8]]
    )
    assert [a["category_id"] for a in coco.annotations] == [1, 2, 2, 1]
    assert all(a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3] for a in coco.annotations)


def test_plain_coco_json_with_guessed_and_given_image_folder(rich, tmp_path):
    spec = load_dataset(rich)
    layout = tmp_path / "plain"
    (layout / "annotations").mkdir(parents=True)
    shutil.copyfile(spec.split("val").annotations, layout / "annotations" / "instances_val2017.json")
    shutil.copytree(spec.split("val").images, layout / "val2017")
    assert detect_format(layout) == "coco"
    res = convert_dataset(layout, tmp_path / "out1")
    assert list(res.splits) == ["val"] and res.category_ids == list(
        spec.class_map.category_ids[i] for i in np.argsort(spec.class_map.category_ids)
    )
    res2 = convert_dataset(
        layout / "annotations" / "instances_val2017.json", tmp_path / "out2", images=layout / "val2017"
    )
    assert res2.splits == res.splits


def test_detect_format(rich, tmp_path):
    assert detect_format(rich) == "coco"
    assert detect_format(rich / "dataset.yaml") == "coco"
    convert_dataset(rich, tmp_path / "y", to="yolo")
    convert_dataset(rich, tmp_path / "v", to="voc")
    assert detect_format(tmp_path / "y") == "yolo"
    assert detect_format(tmp_path / "y" / "data.yaml") == "yolo"
    assert detect_format(tmp_path / "v") == "voc"


def test_voc_class_order_option_and_default(tmp_path, rich):
    convert_dataset(rich, tmp_path / "v", to="voc")
    (tmp_path / "v" / "detkit_meta.json").unlink()
    res = convert_dataset(tmp_path / "v", tmp_path / "sorted")
    assert res.class_names == sorted(load_dataset(rich).class_map.names) and res.category_ids == [1, 2, 3, 4, 5]
    order = ["star", "cross", "circle", "square", "triangle"]
    res = convert_dataset(tmp_path / "v", tmp_path / "given", classes=order)
    assert res.class_names == order


def test_link_option_hard_links_images(rich, tmp_path):
    convert_dataset(rich, tmp_path / "y", to="yolo", link=True)
    src = load_dataset(rich).split("train").images / "000001.jpg"
    assert (tmp_path / "y" / "images" / "train" / "000001.jpg").stat().st_ino == src.stat().st_ino


def test_cli_convert_json_and_overwrite(cli, rich, tmp_path):
    r = cli("data", "convert", rich, tmp_path / "y", "--to", "yolo", "--json")
    assert r.code == 0, r.text
    doc = json.loads(r.out)
    assert doc["to"] == "yolo" and doc["splits"]["train"]["images"] == 13
    r = cli("data", "convert", tmp_path / "y", tmp_path / "y2", "--from", "yolo", "--to", "voc")
    assert r.code == 0 and str(tmp_path / "y2") in r.out
    r = cli("data", "convert", rich, tmp_path / "y", "--to", "voc", "--overwrite", "--quiet")
    assert r.code == 0 and r.out == ""
    assert (tmp_path / "y" / "Annotations").is_dir() and not (tmp_path / "y" / "labels").exists()


def test_ultralytics_dataset_yaml_name_is_detected_as_yolo(tmp_path):
    src = _yolo_by_hand(tmp_path / "y")
    (src / "data.yaml").rename(src / "dataset.yaml")
    assert detect_format(src) == "yolo"
    assert convert_dataset(src, tmp_path / "out").src_format == "yolo"
