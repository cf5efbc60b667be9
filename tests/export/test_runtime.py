"""OnnxDetector behind open_detector / load_model: the same Detector interface as the PyTorch detector, the same
evaluation results."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from detkit_testing import assert_clean_error


def _pseudo_ground_truth(coco, table, per_image: int = 3):
    """The PyTorch model's own top detections as ground truth: AP far from 0, so a disagreement would show."""
    from detkit.data.coco import CocoData

    anns = []
    for image_id in np.unique(table.image_ids):
        rows = np.flatnonzero(table.image_ids == image_id)
        for r in rows[np.argsort(-table.scores[rows])[:per_image]]:
            x, y, w, h = table.boxes[r].tolist()
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": int(image_id),
                    "category_id": int(table.category_ids[r]),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    return CocoData(images=coco.images, annotations=anns, categories=coco.categories)


def test_onnx_evaluation_equals_pytorch(synth_dataset, ckpt, export_small):
    from detkit.api import load_model
    from detkit.data.coco import read_coco
    from detkit.data.dataset import load_dataset
    from detkit.evaluation.coco_metrics import evaluate_coco
    from detkit.evaluation.inference import predict_split
    from detkit.inference import Detector, OnnxDetector

    ds = load_dataset(synth_dataset)
    split = ds.split("val")
    torch_det, onnx_det = load_model(ckpt, device="cpu"), load_model(export_small.model_path, device="cpu")
    assert (
        isinstance(onnx_det, OnnxDetector)
        and onnx_det.class_map == torch_det.class_map
        and onnx_det.imgsz == torch_det.imgsz
    )
    assert isinstance(onnx_det, Detector) and isinstance(torch_det, Detector)
    assert (onnx_det.backend, torch_det.backend) == ("onnxruntime", "torch")
    t_table, o_table = predict_split(torch_det, split, batch_size=4), predict_split(onnx_det, split, batch_size=4)
    assert len(t_table) == len(o_table) > 0
    pseudo = _pseudo_ground_truth(read_coco(split.annotations), t_table)
    for gt in (pseudo, read_coco(split.annotations)):
        ap_t = evaluate_coco(gt, t_table, ds.class_map)["AP"]
        ap_o = evaluate_coco(gt, o_table, ds.class_map)["AP"]
        assert abs(ap_t - ap_o) <= 0.001  # 0.1 AP points
    assert evaluate_coco(pseudo, t_table, ds.class_map)["AP"] > 0.5


def test_detkit_eval_accepts_an_onnx_model(cli, synth_dataset, export_small, tmp_path):
    r = cli(
        "eval",
        export_small.model_path,
        "--data",
        synth_dataset,
        "--split",
        "val",
        "--out",
        tmp_path,
        "--json",
        "--quiet",
    )
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    assert payload["num_images"] == 6 and payload["AP"] is not None


def test_embedded_metadata_works_without_the_sidecar(export_small, tmp_path):
    from detkit.api import load_model

    lone = tmp_path / "lone.onnx"
    shutil.copy(export_small.model_path, lone)
    det = load_model(lone)
    assert det.imgsz == (96, 96) and len(det.class_map) == 5
    img = np.random.default_rng(0).integers(0, 256, (80, 120, 3), dtype=np.uint8)
    (d,) = det.predict([img], conf=0.0)
    assert d.boxes.shape[1] == 4 and set(d.category_ids.tolist()) <= set(det.class_map.category_ids)
    table = det.predict_table([img, img], [7, 8])
    assert set(table.image_ids.tolist()) == {7, 8}


def test_load_model_onnx_bad_inputs(export_small, tmp_path):
    import onnx

    from detkit.api import load_model
    from detkit.errors import DetkitError

    with pytest.raises(DetkitError, match="weights= does not apply"):
        load_model(export_small.model_path, weights="x.pt")
    with pytest.raises(DetkitError, match="fixed at 96×96"):
        load_model(export_small.model_path, imgsz=640)
    with pytest.raises(DetkitError, match="not found"):
        load_model(tmp_path / "nope.onnx")
    bare = tmp_path / "bare.onnx"
    model = onnx.load(str(export_small.model_path))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    with pytest.raises(DetkitError, match="no detkit metadata"):
        load_model(bare)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx file")
    with pytest.raises(DetkitError, match="junk.onnx"):
        load_model(junk)


def test_predict_cli_reports_a_broken_onnx_file(cli, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"garbage")
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    import cv2

    cv2.imwrite(str(img_dir / "a.png"), np.zeros((32, 32, 3), np.uint8))
    assert_clean_error(cli("predict", junk, img_dir, "--out", tmp_path / "out"), "junk.onnx")


def test_predict_with_the_onnx_backend(cli, export_small, tmp_path):
    import cv2

    src = tmp_path / "imgs"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    r = cli("predict", export_small.model_path, src, "--out", tmp_path / "out", "--conf", "0", "--json")
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    assert payload["backend"] == "onnxruntime" and payload["images"] == 1 and payload["detections"] == 150


def test_embedded_calibrator_is_used_and_not_applied_twice(cli, export_640, calibrator_file, tmp_path):
    from detkit.stages.predict import Selector, load_predictor

    predictor, backend = load_predictor(export_640.model_path)
    select = Selector(predictor)
    assert backend == "onnxruntime" and select.description == "calibrator per-class thresholds"
    labels, scores = np.array([0, 4]), np.array([0.31, 0.59], np.float32)
    kept = select(labels, np.zeros((2, 4), np.float32), scores, scores)
    assert kept[0].tolist() == [0]  # thresholds 0.3 (class 0) and 0.6 (class 4) on the calibrated scores
    src = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(src), np.zeros((40, 40, 3), np.uint8))
    r = cli("predict", export_640.model_path, src, "--calibrator", calibrator_file, "--out", tmp_path / "o")
    assert_clean_error(r, "already embeds a calibrator")


def test_bench_cli_both_backends(cli, export_small, tmp_path):
    """An export remembers its source checkpoint, so the ONNX file alone benchmarks both backends."""
    out = tmp_path / "bench.json"
    r = cli(
        "bench",
        export_small.model_path,
        "--backends",
        "torch,onnxruntime",
        "--batch",
        "1,2",
        "--threads",
        "1",
        "--iters",
        "2",
        "--out",
        out,
        "--json",
    )
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    rows = {(row["backend"], row["batch"]) for row in payload["rows"]}
    assert rows == {("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)}
    for row in payload["rows"]:
        assert row["threads"] == 1 and row["precision"] == "fp32"
        assert 0 < row["pre_ms"] and 0 < row["infer_ms"] and 0 <= row["post_ms"]
        assert row["total_ms"] == pytest.approx(row["pre_ms"] + row["infer_ms"] + row["post_ms"], rel=0.5)
    assert payload["warmup"] >= 3 and payload["device"]["cpu"] and payload["versions"]["onnxruntime"]
    assert json.loads(out.read_text())["rows"] == payload["rows"]
    assert payload["notes"] == []  # nothing was exported on the fly


def test_bench_exports_a_checkpoint_on_the_fly(ckpt):
    from detkit.stages.bench import benchmark

    result = benchmark(ckpt, backends=["onnxruntime"], iters=1, threads=[1])
    assert [r.backend for r in result.rows] == ["onnxruntime"] and "exported for this benchmark" in result.notes[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--backends", "tensorrt"], "unknown backend"),
        (["--batch", "0"], "batch sizes must be >= 1"),
        (["--batch", "1,x"], "comma-separated list of integers"),
        (["--imgsz", "100"], "multiples of 32"),
    ],
)
def test_bench_bad_options(cli, ckpt, tmp_path, args, needle):
    assert_clean_error(cli("bench", ckpt, *args, "--out", tmp_path / "b.json"), needle)
    assert not (tmp_path / "b.json").exists()


def test_bench_torch_backend_of_a_lone_onnx_needs_its_checkpoint(cli, export_small, tmp_path):
    lone = tmp_path / "lone.onnx"
    shutil.copy(export_small.model_path, lone)
    import onnx

    model = onnx.load(str(lone))
    meta = json.loads(model.metadata_props[0].value)
    meta["source"]["path"] = str(tmp_path / "gone.pt")
    model.metadata_props[0].value = json.dumps(meta)
    onnx.save(model, str(lone))
    assert_clean_error(
        cli("bench", lone, "--backends", "torch", "--out", tmp_path / "b.json"), "source checkpoint is not available"
    )
