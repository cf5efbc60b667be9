"""Every command that takes a MODEL runs on bare foreign weights (no recipe, no class map inside)."""

from __future__ import annotations

import json

import pytest
from detkit_testing import assert_clean_error

KINDS = ["pth", "safetensors"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    import cv2
    import numpy as np

    src = tmp_path_factory.mktemp("imgs")
    cv2.imwrite(str(src / "a.png"), np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    return src


@pytest.mark.parametrize("kind", KINDS)
def test_eval_takes_the_classes_from_data(cli, official_files, synth_dataset, kind, tmp_path):
    r = cli("eval", official_files[kind], "--data", synth_dataset, "--out", tmp_path, "--device", "cpu", "--json")
    assert r.code == 0, r.text
    summary = json.loads(r.out)
    assert summary["num_images"] == 6 and summary["num_detections"] == 6 * 300
    preds = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    assert {p["category_id"] for p in preds} <= {1, 2, 3, 4, 5}  # the dataset's ids, not generic 0..4


@pytest.mark.parametrize("kind", KINDS)
def test_calibrate(cli, official_files, synth_dataset, kind, tmp_path):
    out = tmp_path / "calibrator.json"
    r = cli(
        "calibrate",
        official_files[kind],
        "--data",
        synth_dataset,
        "--method",
        "temperature",
        "--out",
        out,
        "--device",
        "cpu",
        "--json",
    )
    assert r.code == 0, r.text
    from detkit.calibration import load_calibrator
    from detkit.data.synth import synth_class_map

    assert load_calibrator(out).class_map == synth_class_map()


@pytest.mark.parametrize("kind", KINDS)
def test_export_and_predict_with_classes(cli, official_files, synth_dataset, images, kind, tmp_path):
    onnx = tmp_path / "model.onnx"
    verify = ["--verify"] if kind == "pth" else ["--no-verify"]  # parity of the same graph once is enough
    r = cli(
        "export",
        "onnx",
        official_files[kind],
        "--classes",
        synth_dataset / "dataset.yaml",
        "--out",
        onnx,
        *verify,
        "--json",
    )
    assert r.code == 0, r.text
    meta = json.loads((tmp_path / "model.json").read_text())
    assert (
        meta["imgsz"] == [160, 160] and meta["num_classes"] == 5 and meta["classes"]["category_ids"] == [1, 2, 3, 4, 5]
    )
    assert meta["source"]["path"] == str(official_files[kind]) and meta["source"]["sha256"]
    assert kind != "pth" or json.loads(r.out)["parity"]["passed"]
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\ne\n")
    r = cli(
        "predict", official_files[kind], images, "--classes", names, "--conf", "0", "--out", tmp_path / "p", "--json"
    )
    assert r.code == 0, r.text
    assert json.loads(r.out)["backend"] == "torch" and json.loads(r.out)["detections"] == 300
    line = json.loads((tmp_path / "p" / "predictions.jsonl").read_text().splitlines()[0])
    assert {d["class"] for d in line["detections"]} <= set("abcde")


@pytest.mark.parametrize("kind", KINDS)
def test_bench(cli, official_files, kind, tmp_path):
    r = cli(
        "bench",
        official_files[kind],
        "--backends",
        "torch",
        "--iters",
        "1",
        "--threads",
        "1",
        "--out",
        tmp_path / "b.json",
        "--json",
    )
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    assert payload["imgsz"] == [160, 160] and [row["backend"] for row in payload["rows"]] == ["torch"]


def test_recipe_with_weights_option(cli, official_files, images, tmp_path):
    r = cli("predict", "recipe:rtdetr-r50", images, "--weights", official_files["pth"], "--out", tmp_path / "p")
    assert_clean_error(r, "rtdetrv2_r18vd.pth", "weights do not fit")
    assert not (tmp_path / "p").exists()


def test_bad_weights_leave_nothing_behind(cli, synth_dataset, images, tmp_path):
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"")
    for args, out in [
        (["eval", junk, "--data", synth_dataset, "--out", tmp_path / "e"], tmp_path / "e"),
        (["calibrate", junk, "--data", synth_dataset, "--out", tmp_path / "c.json"], tmp_path / "c.json"),
        (["export", "onnx", junk, "--out", tmp_path / "x.onnx"], tmp_path / "x.onnx"),
        (["predict", junk, images, "--out", tmp_path / "p"], tmp_path / "p"),
        (["bench", junk, "--out", tmp_path / "b.json"], tmp_path / "b.json"),
    ]:
        assert_clean_error(cli(*args), "model.safetensors", "cannot read safetensors file")
        assert not out.exists()
