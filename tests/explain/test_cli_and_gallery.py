"""`detkit explain` end to end (pictures, sheets, --json), every bad input as one line, and the eval failure gallery."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from detkit_testing import assert_clean_error


def test_explain_writes_pictures_sheets_and_json(cli, ckpt, image_files, tmp_path):
    out = tmp_path / "ex"
    r = cli("explain", ckpt, image_files, "--out", out, "--top", "2", "--conf", "0", "--json")
    assert r.code == 0, r.text
    result = json.loads(r.out)
    assert result["method"] == "sampling" and len(result["images"]) == 2
    on_disk = json.loads((out / "explanations.json").read_text())
    assert on_disk["images"] == result["images"]
    for im in result["images"]:
        sheet = cv2.imread(str(out / im["sheet"]))
        assert sheet is not None and sheet.shape[0] > 80
        assert [d["rank"] for d in im["detections"]] == [1, 2]
        for d in im["detections"]:
            pic = cv2.imread(str(out / d["picture"]))
            # small images are drawn enlarged, with their aspect ratio
            assert pic.shape[0] >= im["height"] and pic.shape[0] * im["width"] == pic.shape[1] * im["height"]
            assert len(d["bbox"]) == 4
            assert 0 <= d["mass_inside"] <= 1 and 0 < d["box_share"] <= 1
            assert 0 <= d["peak"][0] <= im["width"] and 0 <= d["peak"][1] <= im["height"]


def test_explain_gradcam_and_a_skipped_unreadable_image(cli, ckpt, image_files, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    r = cli(
        "explain",
        ckpt,
        image_files / "scene0.png",
        bad,
        "--out",
        tmp_path / "g",
        "--method",
        "gradcam",
        "--top",
        "1",
        "--conf",
        "0",
    )
    assert r.code == 0, r.text
    assert "skipped" in r.err and "broken.jpg" in r.err and "Traceback" not in r.text
    assert len(json.loads((tmp_path / "g" / "explanations.json").read_text())["skipped"]) == 1


def test_explain_onnx_defaults_to_drise(cli, onnx_model, image_files, tmp_path):
    r = cli(
        "explain",
        onnx_model,
        image_files / "scene1.png",
        "--out",
        tmp_path / "o",
        "--top",
        "1",
        "--conf",
        "0",
        "--masks",
        "8",
        "--json",
    )
    assert r.code == 0, r.text
    assert json.loads(r.out)["method"] == "drise"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--method", "gradcam"], ["method 'gradcam' needs a PyTorch", "drise"]),
        (["--method", "sampling"], ["method 'sampling' needs a PyTorch"]),
    ],
)
def test_methods_an_onnx_model_cannot_run_are_one_line(cli, onnx_model, image_files, tmp_path, args, needles):
    out = tmp_path / "x"
    assert_clean_error(cli("explain", onnx_model, image_files, "--out", out, *args), *needles)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--top", "0"], ["top must be a whole number >= 1, got 0"]),
        (["--conf", "1.5"], ["conf must be in [0, 1), got 1.5"]),
        (["--conf", "-0.1"], ["conf must be in [0, 1)"]),
        (["--method", "gradcm"], ["unknown explanation method 'gradcm'", "did you mean 'gradcam'"]),
        (["--masks", "0"], ["masks must be >= 1"]),
    ],
)
def test_bad_options_are_one_line(cli, ckpt, image_files, tmp_path, args, needles):
    out = tmp_path / "x"
    assert_clean_error(cli("explain", ckpt, image_files, "--out", out, *args), *needles)
    assert not out.exists()


def test_unreadable_or_missing_images_only_are_one_line(cli, ckpt, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG broken")
    assert_clean_error(cli("explain", ckpt, bad, "--out", tmp_path / "x"), "nothing could be explained", "broken.png")
    assert_clean_error(
        cli("explain", ckpt, tmp_path / "nope.jpg", "--out", tmp_path / "y"), "no images to explain", "nope.jpg"
    )
    assert not (tmp_path / "x").exists()


def test_eval_report_has_a_failure_gallery_with_maps(ckpt, synth_dataset, tmp_path):
    from detkit.explain.gallery import MAX_ITEMS
    from detkit.stages.evaluate import evaluate

    result = evaluate(ckpt, synth_dataset, split="test", out=tmp_path, name="ev", batch_size=8)
    report = (result.dir / "report.md").read_text()
    assert "## Failure gallery" in report
    # a random model at a 0.3 threshold finds nothing: every object is missed, shown with its closest detection
    assert "### Missed objects" in report and "sampling" in report
    sheet = cv2.imread(str(result.dir / "plots" / "failures_missed.png"))
    assert sheet is not None and sheet.std() > 5
    assert "![missed objects](plots/failures_missed.png)" in report
    rows = [ln for ln in report.splitlines() if ln.startswith("| ") and "`" in ln and "IoU" in ln]
    assert 1 <= len(rows) <= MAX_ITEMS


def test_failure_gallery_picks_worst_false_positives_and_misses(ckpt, synth_dataset, tmp_path):
    """Hand-made detections: one correct, one confident false positive, one object missed."""
    from detkit.api import load_model
    from detkit.data.coco import read_coco
    from detkit.data.dataset import load_dataset
    from detkit.evaluation.detections import DetectionTable
    from detkit.explain.gallery import failure_gallery

    spec = load_dataset(synth_dataset)
    gt = read_coco(spec.split("test").annotations)
    regular = [a for a in gt.annotations if not a.get("iscrowd")]
    anns = sorted(regular, key=lambda a: -a["bbox"][2] * a["bbox"][3])[:2]  # misses are shown largest first
    far = [0.0, 0.0, 6.0, 6.0]
    dets = DetectionTable(
        np.array([anns[0]["image_id"], anns[0]["image_id"], anns[1]["image_id"]], np.int64),
        np.array([anns[0]["category_id"], anns[0]["category_id"], anns[1]["category_id"]], np.int64),
        np.array([anns[0]["bbox"], far, anns[1]["bbox"]], np.float64),
        np.array([0.9, 0.8, 0.1]),  # the third is below the operating threshold: its object counts as missed
    )
    plots = tmp_path / "plots"
    plots.mkdir()
    g = failure_gallery(
        load_model(ckpt),
        dets,
        gt,
        spec.split("test").images,
        spec.class_map,
        plots,
        annotations_source=spec.split("test").annotations,
    )
    fps = [it for it in g.items if it.kind == "fp"]
    assert g.num_fp == 1 and fps[0].score == pytest.approx(0.8) and fps[0].box == far
    assert g.num_missed == len(regular) - 1
    missed_1 = next(it for it in g.items if it.kind == "missed" and it.box == [round(v, 1) for v in anns[1]["bbox"]])
    assert missed_1.score == pytest.approx(0.1) and missed_1.detection_iou == pytest.approx(1.0, abs=1e-3)
    assert fps[0].mass_inside is not None and g.method == "sampling"
    assert (plots / "failures_fp.png").is_file() and (plots / "failures_missed.png").is_file()
