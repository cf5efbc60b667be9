"""detkit predict: images, folders and videos; thresholds from --conf or the calibrator; broken files skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
from detkit_testing import assert_clean_error


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_with_broken_files_is_processed_and_reported(cli, ckpt, media, tmp_path, class_map):
    out = tmp_path / "pred"
    r = cli("predict", ckpt, media, "--out", out, "--conf", "0", "--batch", "2", "--json")
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    assert (
        payload["backend"] == "torch" and payload["images"] == 2 and payload["videos"] == 1 and payload["frames"] == 3
    )
    skipped = {s["source"].split("/")[-1]: s["reason"] for s in payload["skipped"]}
    assert set(skipped) == {"broken.jpg", "broken.mp4"}
    assert "cannot decode image" in skipped["broken.jpg"]
    assert "broken.jpg" in r.err and "broken.mp4" in r.err  # warned on the terminal too
    lines = _lines(out / "predictions.jsonl")
    assert [(line["source"].split("/")[-1], line["frame"]) for line in lines] == [
        ("a.jpg", None),
        ("b.png", None),
        ("clip.mp4", 0),
        ("clip.mp4", 1),
        ("clip.mp4", 2),
    ]
    assert (lines[1]["width"], lines[1]["height"]) == (50, 90)
    dets = [d for line in lines for d in line["detections"]]
    assert dets and sum(len(line["detections"]) for line in lines) == payload["detections"]
    assert all(0 < d["score"] <= 1 and d["category_id"] in class_map.category_ids for d in dets)
    assert all(class_map.names[class_map.category_ids.index(d["category_id"])] == d["class"] for d in dets)
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.jpg", "clip.mp4", "predictions.jsonl"]

    import cv2

    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_conf_filters_and_single_image_source(ckpt, media, tmp_path):
    from detkit.stages.predict import predict

    low = predict(ckpt, [media / "a.jpg"], out=tmp_path / "low", conf=0.0, save_media=False)
    high = predict(ckpt, [media / "a.jpg"], out=tmp_path / "high", conf=0.999, save_media=False)
    assert low.detections == 150 and high.detections == 0  # 30 queries × 5 classes all kept at conf 0
    assert sorted(p.name for p in (tmp_path / "low").iterdir()) == ["predictions.jsonl"]


def test_calibrator_thresholds_are_the_default_operating_point(ckpt, calibrator_file, media, tmp_path, class_map):
    from detkit.api import load_model
    from detkit.calibration.apply import calibrate_scores
    from detkit.calibration.io import load_calibrator
    from detkit.data.images import load_image
    from detkit.stages.predict import predict

    result = predict(ckpt, [media / "a.jpg"], out=tmp_path / "p", calibrator=calibrator_file, save_media=False)
    assert result.selection == "calibrator per-class thresholds"
    cal = load_calibrator(calibrator_file)
    raw = load_model(ckpt, device="cpu").predict([load_image(media / "a.jpg")], conf=-1)[0]
    calibrated = calibrate_scores(cal, raw.scores, raw.labels)
    expected = calibrated >= cal.thresholds[raw.labels]
    (line,) = _lines(tmp_path / "p" / "predictions.jsonl")
    assert len(line["detections"]) == int(expected.sum()) == result.detections
    np.testing.assert_allclose(sorted(d["score"] for d in line["detections"]), np.sort(calibrated[expected]), atol=1e-5)


def test_nothing_readable_is_an_error_and_leaves_no_output(cli, ckpt, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"nope")
    (bad / "y.avi").write_bytes(b"nope")
    out = tmp_path / "out"
    r = cli("predict", ckpt, bad, "--out", out)
    assert_clean_error(r, "nothing could be processed", "x.jpg")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bad"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["{missing}"], "not found"),
        (["{media}/notes.txt"], "unsupported file type .txt"),
        (["{media}", "--conf", "1.5"], "conf must be in [0, 1)"),
    ],
)
def test_bad_inputs(cli, ckpt, media, tmp_path, args, needle):
    args = [a.format(media=media, missing=tmp_path / "missing.jpg") for a in args]
    assert_clean_error(cli("predict", ckpt, *args, "--out", tmp_path / "o"), needle)


def test_calibrator_for_other_classes_is_refused(cli, ckpt, media, tmp_path):
    from export.tiny import tiny_calibrator

    from detkit.calibration.io import save_calibrator
    from detkit.data.classmap import ClassMap

    other = save_calibrator(tiny_calibrator(ClassMap.from_names(["cat", "dog"])), tmp_path / "other.json")
    assert_clean_error(
        cli("predict", ckpt, media / "a.jpg", "--calibrator", other, "--out", tmp_path / "o"), "other.json", "2 classes"
    )


def test_output_folder_is_not_overwritten(cli, ckpt, media, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_clean_error(cli("predict", ckpt, media / "a.jpg", "--out", out), "not empty")
    assert (out / "keep.txt").read_text() == "mine"
