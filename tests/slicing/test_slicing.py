"""Sliced inference: tiling, mapping back, merging, the eval/predict plumbing and every bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from slicing.fake import BlobDetector, squares_image

from detkit.errors import DetkitError
from detkit.slicing import (
    SlicedDetector,
    SlicingError,
    check_slicing,
    merge_boxes,
    tile_grid,
)

# three squares straddling interior tile borders of the 64 px / 0.25 grid (tile starts 0, 48, 96, 144, 192)
STRADDLING = ((58, 20, 12, 0), (100, 105, 10, 1), (140, 186, 12, 0))


def _sorted(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((labels, *boxes.T[::-1]))
    return boxes[order], labels[order]


# --------------------------------------------------------------------------------------------------------- tiling


@pytest.mark.parametrize(
    "image_hw, slice_hw, overlap",
    [
        ((256, 256), (64, 64), 0.25),
        ((300, 200), (64, 96), 0.2),
        ((100, 130), (100, 40), 0.0),
        ((64, 64), (64, 64), 0.5),
        ((97, 61), (13, 7), 0.9),
    ],
)
def test_tiles_cover_the_image_with_the_overlap(image_hw, slice_hw, overlap):
    tiles = tile_grid(image_hw, slice_hw, overlap)
    assert (tiles[:, 2] - tiles[:, 0] == slice_hw[1]).all() and (tiles[:, 3] - tiles[:, 1] == slice_hw[0]).all()
    assert tiles.min() >= 0 and (tiles[:, 2] <= image_hw[1]).all() and (tiles[:, 3] <= image_hw[0]).all()
    covered = np.zeros(image_hw, int)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] += 1
    assert (covered > 0).all()
    for axis, (size, tile) in enumerate(zip(image_hw, slice_hw)):  # neighbours share at least the overlap
        starts = np.unique(tiles[:, 1 - axis])
        assert starts[0] == 0 and starts[-1] == size - tile
        assert (tile - np.diff(starts) >= int(np.floor(overlap * tile))).all()


# ------------------------------------------------------------------------------------------ mapping and merging


@pytest.mark.parametrize("merge", ["nms", "wbf"])
def test_small_objects_missed_by_the_full_pass_come_back_exactly(merge):
    img, boxes, labels = squares_image((256, 256), seed=3, n=14, sizes=(6, 12), fixed=STRADDLING)
    det = BlobDetector(imgsz=64, min_px=4)
    assert len(det.predict([img])[0]) == 0  # at 64 px the 6-12 px squares shrink below what it sees
    found = SlicedDetector(det, (64, 64), overlap=0.25, merge=merge).predict(img)[0]
    got, got_labels = _sorted(found.boxes, found.labels)
    want, want_labels = _sorted(boxes, labels)
    assert len(got) == len(want)  # every object once: no duplicates from overlapping or cutting tiles
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_array_equal(got_labels, want_labels)
    np.testing.assert_array_equal(found.category_ids, found.labels + 1)
    assert (np.diff(found.scores) <= 0).all()


def test_the_full_image_pass_keeps_large_objects_that_no_tile_holds():
    img, boxes, labels = squares_image((256, 256), seed=1, n=6, sizes=(6, 10), fixed=((70, 70, 100, 1),))
    found = SlicedDetector(BlobDetector(imgsz=64, min_px=4), (64, 64), overlap=0.25).predict(img)[0]
    got, _ = _sorted(found.boxes, found.labels)
    want, _ = _sorted(boxes, labels)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_tiles_are_detected_at_the_model_size_with_the_full_image_first():
    det = BlobDetector(imgsz=64)
    SlicedDetector(det, (64, 96), overlap=0.5).predict(np.zeros((128, 192, 3), np.uint8))
    assert det.calls[0] == (128, 192)
    assert det.calls[1:] == [(64, 96)] * len(tile_grid((128, 192), (64, 96), 0.5))


def test_merge_removes_duplicates_per_class_only():
    boxes = np.array([[10, 10, 20, 20], [10.5, 10, 20.5, 20], [10, 10, 20, 20], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.6, 0.8, 0.7], np.float32)
    labels = np.array([0, 0, 1, 0])
    keep, merged = merge_boxes(boxes, scores, labels, iou=0.5, method="nms")
    assert keep.tolist() == [0, 2, 3]  # the duplicate of class 0 goes; class 1's identical box stays
    np.testing.assert_array_equal(merged, boxes[keep])
    keep, fused = merge_boxes(boxes, scores, labels, iou=0.5, method="wbf")
    assert keep.tolist() == [0, 2, 3]
    np.testing.assert_allclose(fused[0], (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(fused[1:], boxes[[2, 3]])


def test_raw_scores_follow_their_boxes_through_the_merge():
    class WithInfer(BlobDetector):
        def infer(self, images):  # a "calibrated" graph: scores are halved, raw scores kept
            return [(d.labels, d.boxes, d.scores / 2, d.scores) for d in self.predict(images, conf=-1.0)]

    img, _, _ = squares_image((128, 128), seed=2, n=5, sizes=(6, 10))
    out = SlicedDetector(WithInfer(imgsz=32, min_px=4), (32, 32), overlap=0.5).infer([img])[0]
    assert len(out[2]) == 5
    np.testing.assert_allclose(out[2] * 2, out[3])


# ----------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "slice_hw, overlap, param",
    [
        ((0, 64), 0.2, "slice_hw"),
        ((64, -8), 0.2, "slice_hw"),
        ((64,), 0.2, "slice_hw"),
        ((64, 6.5), 0.2, "slice_hw"),
        ("64", 0.2, "slice_hw"),
        (None, 0.2, "slice_hw"),
        ((64, 64), 1.0, "overlap"),
        ((64, 64), -0.1, "overlap"),
        ((64, 64), float("nan"), "overlap"),
    ],
)
def test_bad_settings_name_the_parameter(slice_hw, overlap, param):
    with pytest.raises(SlicingError) as e:
        check_slicing(slice_hw, overlap)
    assert e.value.param == param and e.value.message.startswith(param)


def test_a_slice_larger_than_the_image_is_refused():
    with pytest.raises(SlicingError, match=r"slice_hw 64×200 is larger than the image \(128×128\)"):
        SlicedDetector(BlobDetector(), (64, 200)).predict(np.zeros((128, 128, 3), np.uint8))


# ------------------------------------------------------------------------------------------- eval and predict


def _write_squares_dataset(root, n=3, hw=(192, 192)):
    import yaml

    from detkit.data.dataset import dataset_yaml_dict

    class_map = BlobDetector().class_map
    (root / "images" / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for i in range(1, n + 1):
        img, boxes, labels = squares_image(hw, seed=i, n=10, sizes=(6, 10))
        cv2.imwrite(str(root / "images" / "val" / f"sq{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        images.append({"id": i, "file_name": f"sq{i}.png", "width": hw[1], "height": hw[0]})
        for b, lab in zip(boxes.tolist(), labels.tolist()):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": lab + 1,
                    "iscrowd": 0,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "area": (b[2] - b[0]) * (b[3] - b[1]),
                }
            )
    coco = {"images": images, "annotations": anns, "categories": class_map.to_coco_categories()}
    (root / "annotations" / "val.json").write_text(json.dumps(coco))
    spec = dataset_yaml_dict("squares", class_map, {"val": ("images/val", "annotations/val.json")})
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root / "dataset.yaml"


def _files(root):
    """The eval dir's files, less the failure gallery's pictures (written only when there are failures to show)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.name.startswith("failures_"))


def test_eval_with_slicing_writes_the_same_layout_and_finds_the_small_objects(tmp_path):
    from detkit.stages.evaluate import evaluate

    data = _write_squares_dataset(tmp_path / "squares")
    plain = evaluate(BlobDetector(imgsz=64, min_px=4), data, out=tmp_path / "eval", name="plain")
    sliced = evaluate(
        BlobDetector(imgsz=64, min_px=4), data, out=tmp_path / "eval", name="sliced", slice_hw=(64, 64), overlap=0.25
    )
    assert _files(plain.dir) == _files(sliced.dir)
    assert plain.metrics["AP"] == 0.0 and sliced.metrics["AP"] > 0.99 and sliced.metrics["APs"] > 0.99
    meta = json.loads((sliced.dir / "metrics.json").read_text())
    assert meta["slicing"]["slice_hw"] == [64, 64] and meta["slicing"]["overlap"] == 0.25
    assert "slicing" not in json.loads((plain.dir / "metrics.json").read_text())
    assert "64×64 tiles, overlap 0.25" in (sliced.dir / "report.md").read_text()


def test_eval_refuses_a_slice_larger_than_an_image_before_running(tmp_path):
    from detkit.stages.evaluate import evaluate

    data = _write_squares_dataset(tmp_path / "squares", n=1)
    det = BlobDetector()
    with pytest.raises(SlicingError, match=r"slice_hw 256×64 is larger than image sq1.png \(192×192\)"):
        evaluate(det, data, out=tmp_path / "eval", slice_hw=(256, 64))
    assert det.calls == [] and not (tmp_path / "eval").exists()
    with pytest.raises(DetkitError, match="predictions file"):
        evaluate(None, data, predictions=tmp_path / "p.json", out=tmp_path / "eval", slice_hw=(64, 64))


def test_cli_predict_and_eval_with_slicing(cli, tiny_ckpt, synth_dataset, tmp_path):
    images = [synth_dataset / "images" / "test" / f"00000{i}.jpg" for i in (1, 2)]
    r = cli(
        "predict",
        tiny_ckpt,
        *images,
        "--out",
        tmp_path / "pred",
        "--slice",
        64,
        48,
        "--overlap",
        0.3,
        "--conf",
        0.0,
        "--no-save",
        "--json",
    )
    assert r.code == 0, r.text
    out = json.loads(r.out)
    assert out["images"] == 2
    lines = [json.loads(x) for x in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(0 < len(x["detections"]) <= 300 for x in lines)
    r = cli(
        "eval",
        tiny_ckpt,
        "--data",
        synth_dataset,
        "--split",
        "test",
        "--slice",
        64,
        64,
        "--out",
        tmp_path,
        "--name",
        "ev",
        "--json",
    )
    assert r.code == 0, r.text
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["slicing"]["slice_hw"] == [64, 64]


@pytest.mark.parametrize(
    "args, message, hint",
    [
        (["--slice", 0, 64], "slice_hw must be two positive integers", "--slice takes the tile height and width"),
        (["--slice", 64, -64], "slice_hw must be two positive integers", "--slice takes"),
        (["--slice", 64, 64, "--overlap", 1], "overlap must be a fraction in [0, 1), got 1.0", "--overlap takes"),
        (["--slice", 64, 64, "--overlap", -0.5], "overlap must be a fraction in [0, 1)", "--overlap takes"),
        (["--overlap", 0.3], "--overlap only applies with --slice", "add --slice H W"),
        (["--slice", 128, 128], "slice_hw 128×128 is larger than", "(--slice H W)"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "eval"])
def test_cli_bad_slicing_is_one_line(cli, tiny_ckpt, synth_dataset, tmp_path, command, args, message, hint):
    if command == "predict":
        r = cli("predict", tiny_ckpt, synth_dataset / "images" / "test", "--out", tmp_path / "p", *args)
    else:
        r = cli("eval", tiny_ckpt, "--data", synth_dataset, "--split", "test", "--out", tmp_path, *args)
    assert r.code != 0
    assert message in r.err and hint in r.err, r.err
    assert "Traceback" not in r.text
    assert not any(tmp_path.iterdir())  # nothing written
    if "larger" in message:
        assert "000001.jpg" in r.err  # names the user's image
