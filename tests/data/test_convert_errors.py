"""Bad input to detkit data convert: one clean line naming the file (and line / id), exit 1, no traceback,
and nothing left at the output path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from detkit_testing import assert_clean_error
from PIL import Image

from detkit.data.convert import convert_dataset
from detkit.errors import DetkitError


def _yolo(root: Path, names: str = "[cat, dog]", labels: dict[str, str] | None = None, yaml_extra: str = "") -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for stem in ("a", "b"):
        Image.new("RGB", (32, 24), (10, 200, 90)).save(root / "images" / "train" / f"{stem}.jpg")
    for stem, text in (labels or {"a": "0 0.5 0.5 0.25 0.25\n", "b": "1 0.4 0.4 0.2 0.2\n"}).items():
        (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    (root / "data.yaml").write_text(f"train: images/train\nnames: {names}\n{yaml_extra}")
    return root


def _coco(root: Path, mutate=None) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    Image.new("RGB", (32, 24), (10, 200, 90)).save(root / "images" / "train" / "a.jpg")
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 32, "height": 24}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    if mutate:
        mutate(doc)
    (root / "annotations").mkdir()
    (root / "annotations" / "train.json").write_text(json.dumps(doc, indent=1))
    return root


def _voc(root: Path, xml: str, classes_meta: bool = False) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    Image.new("RGB", (32, 24)).save(root / "JPEGImages" / "a.jpg")
    (root / "Annotations" / "a.xml").write_text(xml)
    return root


VOC_XML = """<annotation><filename>a.jpg</filename><size><width>32</width><height>24</height><depth>3</depth></size>
<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
</annotation>"""


def _convert_fails(cli, src: Path, tmp_path: Path, *needles: str, args: tuple = ()) -> None:
    out = tmp_path / "out"
    r = cli("data", "convert", src, out, *args)
    assert_clean_error(r, *needles)
    assert not out.exists(), "a partial output folder was left behind"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], "a temporary folder was left behind"


def test_malformed_coco_json(cli, tmp_path):
    src = _coco(tmp_path / "c")
    (src / "annotations" / "train.json").write_text('{"images": [\n  {"id": 1,,}\n]}')
    _convert_fails(cli, src, tmp_path, "train.json", "malformed JSON (line 2")


def test_malformed_yolo_yaml(cli, tmp_path):
    src = _yolo(tmp_path / "y")
    (src / "data.yaml").write_text("train: images/train\nnames: [cat, dog\n")
    _convert_fails(cli, src, tmp_path, "data.yaml", "malformed YAML (line")


def test_coco_wrong_schema_names_the_annotation_id(cli, tmp_path):
    src = _coco(tmp_path / "c", lambda d: d["annotations"][0].update(bbox=[1, 2, 3]))
    _convert_fails(cli, src, tmp_path, "train.json", "annotation id 1 has an invalid 'bbox'")


def test_yolo_wrong_schema(cli, tmp_path):
    src = _yolo(tmp_path / "y", names="{0: cat, 2: dog}")
    _convert_fails(cli, src, tmp_path, "data.yaml", "'names' keys must be the class indices", args=("--from", "yolo"))


def test_coco_unknown_category_is_named(cli, tmp_path):
    src = _coco(tmp_path / "c", lambda d: d["annotations"][0].update(category_id=9))
    _convert_fails(cli, src, tmp_path, "train.json: annotation id 1: category_id 9 is not one of the classes")


def test_missing_split_folder(cli, tmp_path):
    src = _yolo(tmp_path / "y", yaml_extra="val: images/val\n")
    _convert_fails(cli, src, tmp_path, "data.yaml", "'val': 'images/val' is neither a folder")


def test_missing_voc_folders(cli, tmp_path):
    (tmp_path / "v" / "Annotations").mkdir(parents=True)
    _convert_fails(cli, tmp_path / "v", tmp_path, "not a Pascal VOC folder", args=("--from", "voc"))


def test_missing_source(cli, tmp_path):
    _convert_fails(cli, tmp_path / "nope", tmp_path, "nope", "source not found")


def test_image_that_is_not_an_image(cli, tmp_path):
    src = _yolo(tmp_path / "y")
    (src / "images" / "train" / "b.jpg").write_bytes(b"this is text, not a JPEG")
    _convert_fails(cli, src, tmp_path, "b.jpg", "not a readable image")


def test_coco_image_that_is_not_an_image(cli, tmp_path):
    src = _coco(tmp_path / "c")
    (src / "images" / "train" / "a.jpg").write_bytes(b"\x00" * 100)
    _convert_fails(cli, src, tmp_path, "a.jpg", "not a readable image")


def test_yolo_label_line_with_wrong_arity(cli, tmp_path):
    src = _yolo(tmp_path / "y", labels={"a": "0 0.5 0.5 0.25 0.25\n1 0.5 0.5 0.25\n"})
    _convert_fails(cli, src, tmp_path, "a.txt", "line 2: expected 5 values", "got 4")


def test_yolo_label_with_non_number(cli, tmp_path):
    src = _yolo(tmp_path / "y", labels={"b": "1 0.5 zero 0.25 0.25\n"})
    _convert_fails(cli, src, tmp_path, "b.txt", "line 1: not a number")


def test_yolo_class_index_out_of_range(cli, tmp_path):
    src = _yolo(tmp_path / "y", labels={"a": "\n2 0.5 0.5 0.25 0.25\n"})
    _convert_fails(cli, src, tmp_path, "a.txt", "line 2: class index 2 out of range")


def test_yolo_non_finite_value(cli, tmp_path):
    src = _yolo(tmp_path / "y", labels={"a": "0 nan 0.5 0.25 0.25\n"})
    _convert_fails(cli, src, tmp_path, "a.txt: line 1: box (cx nan, cy 0.5, w 0.25, h 0.25) is not finite")


def test_yolo_non_finite_class_index(cli, tmp_path):
    src = _yolo(tmp_path / "y", labels={"a": "nan 0.5 0.5 0.25 0.25\n"})
    _convert_fails(cli, src, tmp_path, "a.txt", "line 1: class index nan out of range")


def test_voc_unknown_class_with_given_classes(cli, tmp_path):
    src = _voc(tmp_path / "v", VOC_XML.format(name="zebra"))
    _convert_fails(cli, src, tmp_path, "a.xml", "object 0: unknown class 'zebra'", args=("--classes", "cat,dog"))


def test_voc_unknown_class_against_sidecar(tmp_path, synth_dataset):
    convert_dataset(synth_dataset, tmp_path / "v", to="voc")
    xml = next((tmp_path / "v" / "Annotations").rglob("*.xml"))
    xml.write_text(xml.read_text().replace("<name>", "<name>x", 1))
    with pytest.raises(DetkitError, match=r"unknown class 'x"):
        convert_dataset(tmp_path / "v", tmp_path / "back")
    assert not (tmp_path / "back").exists()


def test_voc_xml_with_external_entity_is_never_expanded(cli, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xml = f'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY xxe SYSTEM "file://{secret}">]>\n' + VOC_XML.format(
        name="&xxe;"
    )
    src = _voc(tmp_path / "v", xml)
    out = tmp_path / "out"
    r = cli("data", "convert", src, out)
    assert_clean_error(r, "a.xml", "XML with a DTD or entities is refused")
    assert "TOPSECRET" not in r.text and not out.exists()


def test_voc_malformed_xml(cli, tmp_path):
    src = _voc(tmp_path / "v", "<annotation><object></annotation>")
    _convert_fails(cli, src, tmp_path, "a.xml", "malformed XML (line 1")


def test_yaml_language_tag_is_never_executed(cli, tmp_path):
    marker = tmp_path / "pwned"
    src = _yolo(tmp_path / "y")
    (src / "data.yaml").write_text(f'train: !!python/object/apply:os.system ["touch {marker}"]\nnames: [cat, dog]\n')
    _convert_fails(cli, src, tmp_path, "data.yaml", "YAML tag not allowed", args=("--from", "yolo"))
    assert not marker.exists()


@pytest.mark.parametrize("file_name, needle", [("../../outside.jpg", "contains '..'"), ("/etc/passwd", "is absolute")])
def test_coco_file_name_escaping_the_root(cli, tmp_path, file_name, needle):
    src = _coco(tmp_path / "c", lambda d: d["images"][0].update(file_name=file_name))
    _convert_fails(cli, src, tmp_path, "train.json", "image id 1", needle)


@pytest.mark.parametrize(
    "yaml_line, needle", [("path: ../elsewhere\n", "contains '..'"), ("path: /etc\n", "is absolute")]
)
def test_yolo_data_yaml_path_escaping_the_root(cli, tmp_path, yaml_line, needle):
    src = _yolo(tmp_path / "y", yaml_extra=yaml_line)
    _convert_fails(cli, src, tmp_path, "data.yaml", needle)


def test_yolo_split_path_escaping_the_root(cli, tmp_path):
    src = _yolo(tmp_path / "y")
    shutil.copytree(src / "images", tmp_path / "outside")
    (src / "data.yaml").write_text("train: ../outside/train\nnames: [cat, dog]\n")
    _convert_fails(cli, src, tmp_path, "data.yaml", "train '../outside/train' contains '..'")


def test_symlink_escaping_the_root(cli, tmp_path):
    src = _yolo(tmp_path / "y")
    (tmp_path / "elsewhere").mkdir()
    (src / "images" / "val").symlink_to(tmp_path / "elsewhere")
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat, dog]\n")
    _convert_fails(cli, src, tmp_path, "data.yaml", "resolves outside the dataset root")


def test_bad_format_options(cli, tmp_path):
    src = _yolo(tmp_path / "y")
    _convert_fails(cli, src, tmp_path, "to must be one of", "on the command line: --to", args=("--to", "pascal"))
    _convert_fails(cli, src, tmp_path, "src_format must be one of", "--from", args=("--from", "darknet"))
    _convert_fails(cli, src, tmp_path, "classes only applies to VOC", "--classes", args=("--classes", "a,b"))


def test_existing_output_is_refused_and_kept(cli, tmp_path):
    src = _yolo(tmp_path / "y")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = cli("data", "convert", src, out)
    assert_clean_error(r, "output folder exists and is not empty")
    assert (out / "keep.txt").read_text() == "mine"


def test_undetectable_source(cli, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("hi")
    _convert_fails(cli, tmp_path / "junk", tmp_path, "cannot tell the dataset format")


def test_output_may_not_contain_or_replace_the_source(cli, tmp_path):
    src = _yolo(tmp_path / "y")
    r = cli("data", "convert", src, tmp_path, "--overwrite")
    assert_clean_error(r, "may not be the source folder or contain it")
    assert (src / "data.yaml").is_file()
    r = cli("data", "convert", src, src / "images", "--overwrite")
    assert_clean_error(r, "may not replace part of the source")
    assert (src / "images" / "train" / "a.jpg").is_file()


@pytest.mark.parametrize("to", ["yolo", "voc"])
def test_images_that_would_share_a_label_file(cli, tmp_path, to):
    src = _coco(tmp_path / "c")
    Image.new("RGB", (32, 24)).save(src / "images" / "train" / "a.png")
    doc = json.loads((src / "annotations" / "train.json").read_text())
    doc["images"].append({"id": 2, "file_name": "a.png", "width": 32, "height": 24})
    (src / "annotations" / "train.json").write_text(json.dumps(doc))
    _convert_fails(cli, src, tmp_path, "'a.jpg' and 'a.png' would share", args=("--to", to))
