"""The spine's dataset contract: load_dataset refuses every bad dataset.yaml with one line naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.data import load_dataset
from detkit.errors import DetkitError

GOOD = """detkit_dataset: 1
name: tiny
classes:
  - {name: cat, id: 3}
  - {name: dog, id: 1}
splits:
  train: {images: images/train, annotations: annotations/train.json}
"""


def _write(root: Path, text: str, make_dirs: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if make_dirs:
        (root / "images" / "train").mkdir(parents=True, exist_ok=True)
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / "train.json").write_text('{"images": [], "annotations": [], "categories": []}')
    (root / "dataset.yaml").write_text(text)
    return root / "dataset.yaml"


def _fails(path: Path, *needles: str) -> None:
    with pytest.raises(DetkitError) as e:
        load_dataset(path)
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg


def test_good_file_keeps_class_order_and_ids(tmp_path):
    spec = load_dataset(_write(tmp_path / "d", GOOD).parent)
    assert spec.class_map.names == ("cat", "dog") and spec.class_map.category_ids == (3, 1)
    assert spec.split("train").images == (tmp_path / "d" / "images" / "train").resolve()
    with pytest.raises(DetkitError, match="has no split 'val'"):
        spec.split("val")


def test_missing_file(tmp_path):
    _fails(tmp_path / "nope" / "dataset.yaml", "dataset.yaml", "not found")


def test_malformed_yaml(tmp_path):
    _fails(_write(tmp_path, GOOD + "  val: {images: [\n"), "dataset.yaml", "malformed YAML (line")


def test_yaml_language_tag_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    _fails(
        _write(tmp_path, f'name: !!python/object/apply:os.system ["touch {marker}"]\n' + GOOD.split("\n", 2)[2]),
        "YAML tag not allowed",
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    "text, needle",
    [
        ("- just\n- a list\n", "must be a mapping"),
        (GOOD.replace("id: 3", "id: three"), "classes.0.id"),
        (GOOD.replace("name: tiny\n", "name: tiny\nextra: 1\n"), "extra"),
        (GOOD.replace("{name: dog, id: 1}", "{name: cat, id: 1}"), "duplicate class names: cat"),
        (GOOD.replace("{name: dog, id: 1}", "{name: dog, id: 3}"), "duplicate category ids"),
        (GOOD.replace("detkit_dataset: 1", "detkit_dataset: 9"), "unsupported dataset format version 9"),
        ("detkit_dataset: 1\nclasses: []\nsplits: {}\n", "classes"),
    ],
)
def test_wrong_schema(tmp_path, text, needle):
    _fails(_write(tmp_path, text), "dataset.yaml", needle)


@pytest.mark.parametrize(
    "images, needle",
    [("../outside", "contains '..'"), ("/etc", "is absolute"), ("images/../../x", "contains '..'")],
)
def test_paths_may_not_leave_the_root(tmp_path, images, needle):
    _fails(
        _write(tmp_path / "d", GOOD.replace("images: images/train", f"images: {images}")), "splits.train.images", needle
    )


def test_symlink_out_of_the_root(tmp_path):
    path = _write(tmp_path / "d", GOOD)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "d" / "images" / "link").symlink_to(tmp_path / "elsewhere")
    path.write_text(GOOD.replace("images: images/train", "images: images/link"))
    _fails(path, "resolves outside the dataset root")


def test_missing_folders(tmp_path):
    path = _write(tmp_path / "d", GOOD, make_dirs=False)
    _fails(path, "splits.train.images: folder 'images/train' does not exist")
    (tmp_path / "d" / "images" / "train").mkdir(parents=True)
    _fails(path, "splits.train.annotations: file 'annotations/train.json' does not exist")
    assert load_dataset(path, check_exists=False).split("train").name == "train"
