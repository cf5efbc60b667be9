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
        d["_ids"] = {"dup_ann": a1["id"], "unknown_img": a2["id"], "unknown_cat": a3["id"], "zero": a4["id"], "outside": a5["id"], "partly": a6["id"],
                     "dup_img": imgs[7]["id"], "mismatch": imgs[5]["id"]}

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
    assert one("missing_image").file.endswith("train/000002.jpg") and one("missing_image").image_id == 2
    assert one("unreadable_image").file.endswith("000003.jpg") and one("unreadable_image").severity == "error"
    assert one("truncated_image").file.endswith("000004.jpg")
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
    bad.write_text("{\n  \"images\": [}\n")
    assert_clean_error(cli("data", "validate", bad), "bad.json", "malformed JSON (line 2")
    assert_clean_error(cli("data", "validate", synth_dataset, "--max-boxes", "0"), "--max-boxes must be a positive integer")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_text("x")
    assert_clean_error(cli("data", "validate", synth_dataset, "--fix", out), "output folder exists and is not empty")


def test_yolo_dataset_is_pointed_to_convert(cli, synth_dataset, tmp_path):
    from detkit.data.convert import convert_dataset

    convert_dataset(synth_dataset, tmp_path / "y", to="yolo")
    assert_clean_error(cli("data", "validate", tmp_path / "y" / "data.yaml"), "this is a YOLO dataset", "detkit data convert")
    assert_clean_error(cli("data", "validate", tmp_path / "y"), "this is a YOLO dataset", "detkit data convert")
    convert_dataset(synth_dataset, tmp_path / "v", to="voc")
    assert_clean_error(cli("data", "validate", tmp_path / "v"), "this is a VOC dataset", "detkit data convert")
    (tmp_path / "e").mkdir()
    assert_clean_error(cli("data", "validate", tmp_path / "e"), "no dataset.yaml in this folder")
