"""detkit data convert checks what it read with the validator's rules before writing anything.

Each class of invalid record, in every format it can occur in: refused with one line naming the user's file, the
record and the rule (and nothing left at the output path, not even a temporary folder); with --skip-invalid the
records are left out, listed in convert_report.json, and the written dataset validates clean. No message ever names
the temporary folder a dataset is written into.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from detkit_testing import assert_clean_error
from PIL import Image

from detkit.data.convert import REPORT_FILE, convert_dataset, write_dataset
from detkit.data.formats.reader import read_source
from detkit.data.validate import validate_dataset
from detkit.errors import DetkitError

W, H = 32, 24


def _coco(root: Path, mutate: Callable[[dict], None]) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (W, H), (10, 200, 90)).save(root / "images" / "train" / name)
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": W, "height": H},
            {"id": 2, "file_name": "b.jpg", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 6, 7, 8], "area": 56, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    mutate(doc)
    (root / "annotations").mkdir()
    (root / "annotations" / "train.json").write_text(json.dumps(doc, indent=1))  # (json writes NaN as other tools do)
    return root


def _yolo(root: Path, b_lines: str) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for stem in ("a", "b"):
        Image.new("RGB", (W, H)).save(root / "images" / "train" / f"{stem}.jpg")
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "labels" / "train" / "b.txt").write_text(b_lines)
    (root / "data.yaml").write_text("train: images/train\nnames: [cat, dog]\n")
    return root


def _voc(root: Path, b_box: tuple[str, str, str, str], b_image: bool = True) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for stem, (x1, y1, x2, y2) in (("a", ("1", "2", "10", "12")), ("b", b_box)):
        if stem == "a" or b_image:
            Image.new("RGB", (W, H)).save(root / "JPEGImages" / f"{stem}.jpg")
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{W}</width><height>{H}</height><depth>3</depth></size>"
            f"<object><name>cat</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            "</annotation>"
        )
    return root


def _bbox(box: list) -> Callable[[dict], None]:
    return lambda d: d["annotations"][1].update(bbox=box)


@dataclass
class Case:
    name: str
    build: Callable[[Path], Path]
    file: str  # the user's file the first bad record is in (relative to the source)
    needles: tuple[str, ...]  # in the one error line, besides the file
    dropped: set[tuple[str, str, str]]  # (file, record, rule) listed in convert_report.json with --skip-invalid
    to: str  # the format the skipped copy is written in (each reader and each writer gets a turn)
    boxes: int  # boxes left after --skip-invalid


CASES = [
    # (1) an annotation pointing to an image that does not exist
    Case(
        "coco_unknown_image",
        lambda r: _coco(r, lambda d: d["annotations"][1].update(image_id=99)),
        "annotations/train.json",
        ("annotation id 2: points to image id 99, which does not exist (unknown_image)",),
        {("annotations/train.json", "annotation id 2", "unknown_image")},
        "yolo",
        1,
    ),
    Case(
        "voc_missing_image",
        lambda r: _voc(r, ("1", "2", "10", "12"), b_image=False),
        "Annotations/b.xml",
        ("image id 2: image file", "JPEGImages/b.jpg does not exist (missing_image)"),
        {("Annotations/b.xml", "image id 2", "missing_image"), ("Annotations/b.xml", "object 0", "image dropped")},
        "coco",
        1,
    ),
    # (2) negative box sizes (8: YOLO negative sizes)
    Case(
        "coco_negative_size",
        lambda r: _coco(r, _bbox([5, 6, -7, 8])),
        "annotations/train.json",
        ("annotation id 2: box [5, 6, -7, 8] has non-positive width or height (nonpositive_box)",),
        {("annotations/train.json", "annotation id 2", "nonpositive_box")},
        "voc",
        1,
    ),
    Case(
        "voc_negative_size",
        lambda r: _voc(r, ("10", "2", "5", "12")),
        "Annotations/b.xml",
        ("object 0: box (xmin 10, ymin 2, xmax 5, ymax 12) has non-positive width or height (nonpositive_box)",),
        {("Annotations/b.xml", "object 0", "nonpositive_box")},
        "yolo",
        1,
    ),
    Case(
        "yolo_negative_size",
        lambda r: _yolo(r, "1 0.5 0.5 -0.25 0.25\n"),
        "labels/train/b.txt",
        ("line 1: box (cx 0.5, cy 0.5, w -0.25, h 0.25) has non-positive width or height (nonpositive_box)",),
        {("labels/train/b.txt", "line 1", "nonpositive_box")},
        "voc",
        1,
    ),
    # (3) NaN box values
    Case(
        "coco_nan",
        lambda r: _coco(r, _bbox([5, float("nan"), 7, 8])),
        "annotations/train.json",
        ("annotation id 2: box [5, nan, 7, 8] is not finite (nonfinite_box)",),
        {("annotations/train.json", "annotation id 2", "nonfinite_box")},
        "coco",
        1,
    ),
    Case(
        "voc_nan",
        lambda r: _voc(r, ("1", "nan", "10", "12")),
        "Annotations/b.xml",
        ("object 0: box (xmin 1, ymin nan", "is not finite (nonfinite_box)"),
        {("Annotations/b.xml", "object 0", "nonfinite_box")},
        "coco",
        1,
    ),
    Case(
        "yolo_nan",
        lambda r: _yolo(r, "0 0.5 0.5 0.25 0.25\n1 0.5 nan 0.25 0.25\n"),
        "labels/train/b.txt",
        ("line 2: box (cx 0.5, cy nan, w 0.25, h 0.25) is not finite (nonfinite_box)",),
        {("labels/train/b.txt", "line 2", "nonfinite_box")},
        "coco",
        2,
    ),
    # (4) zero-area boxes
    Case(
        "coco_zero_area",
        lambda r: _coco(r, _bbox([5, 6, 7, 0])),
        "annotations/train.json",
        ("annotation id 2: box [5, 6, 7, 0] has non-positive width or height (nonpositive_box)",),
        {("annotations/train.json", "annotation id 2", "nonpositive_box")},
        "coco",
        1,
    ),
    Case(
        "voc_zero_area",
        lambda r: _voc(r, ("5", "2", "5", "12")),
        "Annotations/b.xml",
        ("object 0: box (xmin 5, ymin 2, xmax 5, ymax 12) has non-positive width or height (nonpositive_box)",),
        {("Annotations/b.xml", "object 0", "nonpositive_box")},
        "voc",
        1,
    ),
    Case(
        "yolo_zero_area",
        lambda r: _yolo(r, "1 0.5 0.5 0 0.25\n"),
        "labels/train/b.txt",
        ("line 1: box (cx 0.5, cy 0.5, w 0, h 0.25) has non-positive width or height (nonpositive_box)",),
        {("labels/train/b.txt", "line 1", "nonpositive_box")},
        "yolo",
        1,
    ),
    # (5) duplicate image ids: the later image goes, and annotation 2 (whose image id no longer exists) with it
    Case(
        "coco_duplicate_image_id",
        lambda r: _coco(r, lambda d: d["images"][1].update(id=1)),
        "annotations/train.json",
        (
            "image id 1: the id is used by more than one image (this one: b.jpg) (duplicate_image_id); "
            "and 1 other error(s): 1 unknown_image",
        ),
        {
            ("annotations/train.json", "image id 1", "duplicate_image_id"),
            ("annotations/train.json", "annotation id 2", "unknown_image"),
        },
        "coco",
        1,
    ),
    # (6) duplicate annotation ids
    Case(
        "coco_duplicate_annotation_id",
        lambda r: _coco(r, lambda d: d["annotations"][1].update(id=1)),
        "annotations/train.json",
        ("annotation id 1: the id is used by more than one annotation (duplicate_annotation_id)",),
        {("annotations/train.json", "annotation id 1", "duplicate_annotation_id")},
        "yolo",
        1,
    ),
    # (7) YOLO coordinates outside [0, 1]
    Case(
        "yolo_out_of_range",
        lambda r: _yolo(r, "0 0.5 0.5 0.2 0.2\n1 1.5 0.5 0.2 0.2\n1 0.5 0.5 1.25 0.5\n"),
        "labels/train/b.txt",
        (
            "line 2: box (cx 1.5, cy 0.5, w 0.2, h 0.2) has values outside [0, 1] (coordinates_out_of_range); "
            "and 1 other error(s): 1 coordinates_out_of_range",
        ),
        {
            ("labels/train/b.txt", "line 2", "coordinates_out_of_range"),
            ("labels/train/b.txt", "line 3", "coordinates_out_of_range"),
        },
        "coco",
        2,
    ),
]


def _no_output(tmp_path: Path, out: Path) -> None:
    assert not out.exists(), "an output folder was written"
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], (
        "a temporary folder was left behind"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_invalid_records_are_refused_naming_the_users_file(cli, tmp_path, case):
    src = case.build(tmp_path / "src")
    out = tmp_path / "out"
    r = cli("data", "convert", src, out, "--to", case.to)
    assert_clean_error(r, f"{src / case.file}: ", *case.needles)
    error_lines = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1 and all(n in error_lines[0] for n in case.needles), r.err
    assert ".tmp" not in r.text
    _no_output(tmp_path, out)
    with pytest.raises(DetkitError, match=case.needles[0][:30].replace("(", r"\(").replace("[", r"\[")):
        convert_dataset(src, out, to=case.to)
    _no_output(tmp_path, out)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_skip_invalid_leaves_them_out_and_lists_them(cli, tmp_path, case):
    src = case.build(tmp_path / "src")
    out = tmp_path / "out"
    r = cli("data", "convert", src, out, "--to", case.to, "--skip-invalid", "--json")
    assert r.code == 0, r.text
    doc = json.loads(r.out)
    assert doc["dropped"] == len(case.dropped) and doc["report"] == str(out / REPORT_FILE)
    assert sum(s["boxes"] for s in doc["splits"].values()) == case.boxes
    assert f"left out {len(case.dropped)} invalid record(s)" in r.err
    report = json.loads((out / REPORT_FILE).read_text())
    assert {(str(Path(d["file"]).relative_to(src)), d["record"], d["rule"]) for d in report["dropped"]} == case.dropped
    assert all(d["message"] for d in report["dropped"]) and report["source"] == str(src)
    written = validate_dataset(out)  # read back in the format it was written in
    assert written.ok, [f.to_dict() for f in written.errors]
    assert sum(len(s.coco.annotations) for s in written.splits.values()) == case.boxes
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_skip_invalid_with_nothing_invalid_writes_an_empty_report(tmp_path):
    src = _yolo(tmp_path / "src", "1 0.5 0.5 0.25 0.25\n")
    result = convert_dataset(src, tmp_path / "out", skip_invalid=True)
    assert result.dropped == [] and json.loads(result.report.read_text())["dropped"] == []
    assert not (tmp_path / "plain").exists()
    assert convert_dataset(src, tmp_path / "plain").report is None and not (tmp_path / "plain" / REPORT_FILE).exists()


def test_warnings_pass_with_a_one_line_summary(cli, tmp_path):
    src = _coco(tmp_path / "src", _bbox([28, 6, 7, 8]))  # sticks out of the 32 px image: a warning, kept as it is
    r = cli("data", "convert", src, tmp_path / "out")
    assert r.code == 0, r.text
    warnings = [ln for ln in r.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "1 box_partly_outside" in warnings[0] and str(src) in warnings[0], r.err
    assert validate_dataset(tmp_path / "out").ok


def test_errors_while_writing_name_the_output_not_the_temporary_folder(tmp_path):
    """A writer given data the validator would refuse (library use) names OUT and its file, never '.out.xxxx.tmp'."""
    data, _ = read_source(_coco(tmp_path / "src", _bbox([5, float("nan"), 7, 8])))
    out = tmp_path / "out"
    with pytest.raises(DetkitError) as err:
        write_dataset(data, out, to="coco")
    assert err.value.message.startswith(f"{out / 'annotations' / 'train.json'}: annotation id 2 has a non-finite bbox")
    assert ".tmp" not in str(err.value)
    _no_output(tmp_path, out)


@pytest.mark.parametrize("to", ["coco", "yolo", "voc"])
def test_disk_errors_while_writing_name_the_output(cli, tmp_path, monkeypatch, to):
    import detkit.data.formats.copying as copying

    def full(src, dst, link=False):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(copying, "copy_image", full)
    src = _yolo(tmp_path / "src", "1 0.5 0.5 0.25 0.25\n")
    out = tmp_path / "out"
    r = cli("data", "convert", src, out, "--to", to)
    assert_clean_error(r, f"{out}: cannot write the output: No space left on device ({out.resolve()}/")
    assert ".tmp" not in r.text
    _no_output(tmp_path, out)


@pytest.mark.parametrize("command", ["convert", "validate --fix", "split", "synth", "augment --out"])
def test_no_data_command_names_the_temporary_folder(cli, tmp_path, monkeypatch, synth_dataset, command):
    """Every data command that writes a dataset goes through the same writer: a failure while writing names OUT and
    the file in it, never the temporary folder the dataset is assembled in, and leaves nothing behind."""
    import detkit.data.writer as writer

    def failing_write(path, data):
        raise DetkitError("simulated write failure", path=path)

    monkeypatch.setattr(writer, "write_coco", failing_write)
    out = tmp_path / "out"
    args = {
        "convert": ("data", "convert", _yolo(tmp_path / "src", "1 0.5 0.5 0.25 0.25\n"), out),
        "validate --fix": ("data", "validate", synth_dataset, "--fix", out),
        "split": ("data", "split", synth_dataset, out),
        "synth": (
            "data",
            "synth",
            out,
            "--train",
            "2",
            "--val",
            "1",
            "--calib",
            "1",
            "--test",
            "1",
            "--imgsz",
            "64",
            "--workers",
            "1",
        ),
        "augment --out": (
            "data",
            "augment",
            synth_dataset,
            "--recipe",
            "recipe:rtdetr-r18",
            "--out",
            out,
            "--imgsz",
            "64",
        ),
    }[command]
    r = cli(*args)
    assert_clean_error(r, f"{out}{'/'}", "/annotations/", "simulated write failure")
    assert ".tmp" not in r.text
    _no_output(tmp_path, out)
