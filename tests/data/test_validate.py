"""detkit data validate: every anomaly is found and named (split, file, ids); --fix writes a clean copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from detkit_testing import assert_clean_error

from detkit.data import load_dataset
from detkit.data.coco import read_coco
from detkit.data.validate import fix_dataset, validate_dataset


def _copy(synth: Path, dst: Path) -> Path:
    shutil.copytree(synth, dst, ignore=shutil.ignore_patterns("coco_o"))
    return dst


def _edit(root: Path, split: str, fn) -> None:
    path = root / "annotations" / f"{split}.json"
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


@pytest.fixture
def broken(synth_dataset, tmp_path):
    """A copy of the synthetic dataset with one of each anomaly (ids noted in the returned dict)."""
    root = _copy(synth_dataset, tmp_path / "broken")
    img_dir = root / "images" / "train"
    (img_dir / "000002.jpg").unlink()  # missing
    (img_dir / "000003.jpg").write_bytes(b"not an image at all")  # unreadable
    data = (img_dir / "000004.jpg").read_bytes()
    (img_dir / "000004.jpg").write_bytes(data[: len(data) // 2])  # truncated
    shutil.copyfile(img_dir / "000001.jpg", img_dir / "stray.jpg")  # not listed

    def train(d):
        imgs, anns = d["images"], d["annotations"]
        imgs[5]["width"] = 50  # size mismatch
        imgs[6]["id"] = imgs[7]["id"]  # duplicate image id (image 7 now twice)
        a1, a2, a3, a4, a5, a6 = anns[-6:]
        a1["id"] = anns[0]["id"]  # duplicate annotation id
        a2["image_id"] = 4242  # unknown image
        a3["category_id"] = 77  # unknown category
        a4["bbox"] = [1.0, 2.0, 0.0, 5.0]  # zero width
        a5["bbox"] = [200.0, 10.0, 5.0, 5.0]  # entirely outside the 96 px image
        a6["bbox"] = [90.0, 10.0, 20.0, 5.0]  # partly outside
        d["_ids"] = {
            "dup_ann": a1["id"],
            "unknown_img": a2["id"],
            "unknown_cat": a3["id"],
            "zero": a4["id"],
            "outside": a5["id"],
            "partly": a6["id"],
            "dup_img": imgs[7]["id"],
            "mismatch": imgs[5]["id"],
        }

    path = root / "annotations" / "train.json"
    doc = json.loads(path.read_text())
    train(doc)
    ids = doc.pop("_ids")
    path.write_text(json.dumps(doc))
    # a non-finite box cannot be written as JSON by our writer, but other tools write NaN
    _edit(root, "val", lambda d: d["annotations"][0].update(bbox=[float("nan"), 1.0, 2.0, 3.0]))
    ids["nan"] = json.loads((root / "annotations" / "val.json").read_text())["annotations"][0]["id"]
    return root, ids


def _find(report, check):
    return [f for f in report.findings if f.check == check]


def test_clean_synthetic_dataset_has_no_findings(synth_dataset):
    report = validate_dataset(synth_dataset)
    assert report.ok and report.findings == [], [f.to_dict() for f in report.findings]
    assert set(report.splits) == {"train", "val", "calib", "test"}


def test_every_anomaly_is_found_and_named(broken):
    root, ids = broken
    report = validate_dataset(root)
    assert not report.ok
    one = lambda check: _find(report, check)[0]  # noqa: E731
    # image-file problems name the JSON that lists the image, the image record and the image file
    missing = one("missing_image")
    assert missing.file.endswith("annotations/train.json") and missing.record == "image id 2" and missing.image_id == 2
    assert "train/000002.jpg does not exist" in missing.message
    assert (
        "000003.jpg is not a readable image" in one("unreadable_image").message
        and one("unreadable_image").severity == "error"
    )
    assert "000004.jpg is truncated" in one("truncated_image").message
    assert one("unlisted_image").file.endswith("stray.jpg") and one("unlisted_image").severity == "warning"
    assert one("size_mismatch").image_id == ids["mismatch"] and "50x96" in one("size_mismatch").message
    assert one("duplicate_image_id").image_id == ids["dup_img"]
    assert one("duplicate_annotation_id").ann_id == ids["dup_ann"]
    unknown = {f.ann_id: f for f in _find(report, "unknown_image")}  # (image 6's annotations lost their image too)
    assert unknown[ids["unknown_img"]].image_id == 4242
    assert one("unknown_category").ann_id == ids["unknown_cat"]
    assert one("nonpositive_box").ann_id == ids["zero"]
    assert one("box_outside_image").ann_id == ids["outside"] and one("box_outside_image").severity == "error"
    assert one("box_partly_outside").ann_id == ids["partly"] and one("box_partly_outside").severity == "warning"
    nan = one("nonfinite_box")
    assert nan.ann_id == ids["nan"] and nan.split == "val" and nan.file.endswith("val.json")
    for f in report.findings:
        assert f.split and f.message


def test_max_boxes_unused_categories_and_imbalance(synth_dataset, tmp_path):
    root = _copy(synth_dataset, tmp_path / "ds")
    for split in ("train", "val", "calib", "test"):
        _edit(root, split, lambda d: d.update(annotations=[a for a in d["annotations"] if a["category_id"] != 5]))
    # 'circle' (id 1) keeps one box in total, 'square' (id 2) keeps all of its own
    keep_one = {"n": 0}

    def thin(d):
        out = []
        for a in d["annotations"]:
            if a["category_id"] == 1:
                keep_one["n"] += 1
                if keep_one["n"] > 1:
                    continue
            out.append(a)
        d["annotations"] = out

    for split in ("train", "val", "calib", "test"):
        _edit(root, split, thin)
    report = validate_dataset(root, max_boxes=3, imbalance_ratio=5)
    assert report.ok  # warnings only
    unused = _find(report, "unused_category")
    assert len(unused) == 1 and "'cross' (id 5)" in unused[0].message
    assert "'circle' only 1" in _find(report, "class_imbalance")[0].message
    crowded = _find(report, "too_many_boxes")
    assert crowded and all("the model's 3 queries" in f.message for f in crowded)
    assert not _find(validate_dataset(root, max_boxes=300, imbalance_ratio=1000), "class_imbalance")


def test_fix_writes_a_clean_copy_and_reports_every_change(broken, tmp_path):
    root, ids = broken
    report = validate_dataset(root)
    result = fix_dataset(report, tmp_path / "fixed")
    after = validate_dataset(tmp_path / "fixed")
    assert after.ok, [f.to_dict() for f in after.errors]
    actions = {(c["check"], c["action"].split(" to ")[0]) for c in result.changes}
    for check in ("missing_image", "unreadable_image", "truncated_image", "duplicate_image_id"):
        assert (check, "dropped image") in actions
    for check in ("unknown_image", "unknown_category", "nonpositive_box", "box_outside_image", "nonfinite_box"):
        assert (check, "dropped annotation") in actions
    assert ("box_partly_outside", "clipped box") in actions
    assert ("size_mismatch", "set size") in actions
    assert ("unlisted_image", "not copied") in actions
    fixed = read_coco(load_dataset(tmp_path / "fixed").split("train").annotations)
    partly = [a for a in fixed.annotations if a["id"] == ids["partly"]][0]
    assert partly["bbox"] == [90.0, 10.0, 6.0, 5.0]
    assert len({a["id"] for a in fixed.annotations}) == len(fixed.annotations)
    assert not (tmp_path / "fixed" / "images" / "train" / "stray.jpg").exists()
    assert load_dataset(tmp_path / "fixed").class_map == load_dataset(root).class_map


def test_plain_coco_json(synth_dataset, tmp_path):
    spec = load_dataset(synth_dataset)
    report = validate_dataset(spec.split("val").annotations, images=spec.split("val").images)
    assert report.ok and list(report.splits) == ["val"]
    lone = tmp_path / "lone.json"
    shutil.copyfile(spec.split("val").annotations, lone)
    report = validate_dataset(lone)
    assert [f.check for f in report.findings] == ["no_image_folder"] and report.ok


def test_cli_exit_status_table_and_json(cli, broken, synth_dataset, tmp_path):
    root, _ = broken
    r = cli("data", "validate", synth_dataset)
    assert r.code == 0 and "no errors" in r.out
    r = cli("data", "validate", root)
    assert r.code == 1 and "missing_image" in r.out and "Traceback" not in r.text
    r = cli("data", "validate", root, "--json", "--max-boxes", "2")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["ok"] is False and doc["checks"]["missing_image"]["count"] == 1 and doc["settings"]["max_boxes"] == 2
    assert any(f["check"] == "too_many_boxes" for f in doc["findings"])
    r = cli("data", "validate", root, "--fix", tmp_path / "fixed", "--json")
    assert r.code == 0, r.text
    doc = json.loads(r.out)
    assert doc["fix"]["errors_after_fix"] == 0 and doc["fix"]["changes"]
    assert (tmp_path / "fixed" / "dataset.yaml").is_file()


def test_cli_bad_inputs(cli, tmp_path, synth_dataset):
    assert_clean_error(cli("data", "validate", tmp_path / "missing.yaml"), "missing.yaml", "not found")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "images": [}\n')
    assert_clean_error(cli("data", "validate", bad), "bad.json", "malformed JSON (line 2")
    assert_clean_error(
        cli("data", "validate", synth_dataset, "--max-boxes", "0"),
        "max_boxes must be a positive integer",
        "--max-boxes",
    )
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_text("x")
    assert_clean_error(cli("data", "validate", synth_dataset, "--fix", out), "output folder exists and is not empty")


def test_coco_folder_without_dataset_yaml(synth_dataset, tmp_path):
    """A folder of annotations/*.json (+ images/<split>/) is read as convert reads it; findings name the JSON."""
    root = tmp_path / "c"
    shutil.copytree(synth_dataset / "annotations", root / "annotations")
    shutil.copytree(synth_dataset / "images", root / "images")
    assert validate_dataset(root).ok and set(validate_dataset(root).splits) == {"train", "val", "calib", "test"}
    _edit(root, "val", lambda d: d["annotations"][0].update(bbox=[1.0, 2.0, -3.0, 4.0]))
    bad = _find(validate_dataset(root), "nonpositive_box")
    assert (
        len(bad) == 1
        and bad[0].file == str(root / "annotations" / "val.json")
        and bad[0].record.startswith("annotation id ")
    )


def test_empty_folder_is_refused(cli, tmp_path):
    (tmp_path / "e").mkdir()
    assert_clean_error(cli("data", "validate", tmp_path / "e"), "no dataset in this folder", "yolo: data.yaml")


@pytest.mark.parametrize("to", ["yolo", "voc"])
def test_yolo_and_voc_datasets_are_validated_as_they_are(cli, synth_dataset, tmp_path, to):
    """A clean dataset in YOLO / VOC form has no findings (VOC's splits share JPEGImages: nothing is 'unlisted')."""
    from detkit.data.convert import convert_dataset

    convert_dataset(synth_dataset, tmp_path / to, to=to)
    report = validate_dataset(tmp_path / to)
    assert report.ok and report.findings == [], [f.to_dict() for f in report.findings]
    assert {s: len(v.coco.annotations) for s, v in report.splits.items()} == {
        s: len(read_coco(load_dataset(synth_dataset).split(s).annotations).annotations)
        for s in ("train", "val", "calib", "test")
    }
    r = cli("data", "validate", tmp_path / to)
    assert r.code == 0 and "no errors" in r.out
    if to == "yolo":
        assert validate_dataset(tmp_path / to / "data.yaml").ok


def _yolo(root: Path, labels: dict[str, str]) -> Path:
    from PIL import Image

    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for stem, text in labels.items():
        Image.new("RGB", (40, 20)).save(root / "images" / "train" / f"{stem}.jpg")
        (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    (root / "data.yaml").write_text("train: images/train\nnames: [cat, dog]\n")
    return root


def test_yolo_findings_name_the_label_file_and_line(cli, tmp_path):
    root = _yolo(
        tmp_path / "y",
        {
            "a": "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 -0.1 0.2\n",  # line 2: negative width
            "b": "\n0 1.5 0.5 0.2 0.2\n0 0.5 nan 0.2 0.2\n",  # line 2: centre outside [0, 1]; line 3: NaN
            "c": "1 0.95 0.5 0.2 0.2\n",  # inside [0, 1] but sticking out of the image: a warning, as ultralytics
        },
    )
    report = validate_dataset(root)
    where = {(f.check, Path(f.file).name, f.record) for f in report.findings}
    assert ("nonpositive_box", "a.txt", "line 2") in where
    assert ("coordinates_out_of_range", "b.txt", "line 2") in where
    assert ("nonfinite_box", "b.txt", "line 3") in where
    assert ("box_partly_outside", "c.txt", "line 1") in where
    assert len(report.errors) == 3
    assert (
        "box (cx 1.5, cy 0.5, w 0.2, h 0.2) has values outside [0, 1]"
        in _find(report, "coordinates_out_of_range")[0].message
    )
    r = cli("data", "validate", root, "--json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert {(Path(f["file"]).name, f["record"]) for f in doc["findings"] if f["severity"] == "error"} == {
        ("a.txt", "line 2"),
        ("b.txt", "line 2"),
        ("b.txt", "line 3"),
    }
    # --fix writes a detkit copy without them, which validates clean
    r = cli("data", "validate", root, "--fix", tmp_path / "fixed", "--json")
    assert r.code == 0, r.text
    assert validate_dataset(tmp_path / "fixed").ok


def test_voc_findings_name_the_xml_file_and_object(cli, tmp_path):
    from PIL import Image

    root = tmp_path / "v"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    boxes = {"a": [(1, 2, 10, 12), (10, 2, 5, 12)], "b": [(1, 2, 10, 12)], "c": [(1, 1, 4, 4)]}
    for stem, objs in boxes.items():
        if stem != "c":  # c.xml's image does not exist
            Image.new("RGB", (32, 24)).save(root / "JPEGImages" / f"{stem}.jpg")
        size = "<size><width>30</width><height>24</height></size>" if stem == "b" else ""  # b: the XML's size is wrong
        xml = "".join(
            "<object><name>cat</name><bndbox>"
            f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for x1, y1, x2, y2 in objs
        )
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename>{size}{xml}</annotation>"
        )
    report = validate_dataset(root)
    where = {(f.check, Path(f.file).name, f.record) for f in report.findings if f.severity == "error"}
    assert ("nonpositive_box", "a.xml", "object 1") in where
    assert ("size_mismatch", "b.xml", "image id 2") in where
    assert ("missing_image", "c.xml", "image id 3") in where
    assert "box (xmin 10, ymin 2, xmax 5, ymax 12)" in _find(report, "nonpositive_box")[0].message
    assert "the XML says 30x24 but image file" in _find(report, "size_mismatch")[0].message
    r = cli("data", "validate", root, "--json")
    assert r.code == 1
    assert {(Path(f["file"]).name, f["record"]) for f in json.loads(r.out)["findings"]} == {
        ("a.xml", "object 1"),
        ("b.xml", "image id 2"),
        ("c.xml", "image id 3"),
    }
