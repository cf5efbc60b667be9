"""OnnxDetector behind load_model: same interface as the PyTorch Detector, same evaluation results."""

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
            anns.append({"id": len(anns) + 1, "image_id": int(image_id), "category_id": int(table.category_ids[r]),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    return CocoData(images=coco.images, annotations=anns, categories=coco.categories)


def test_onnx_evaluation_equals_pytorch(synth_dataset, ckpt, export_small):
    from detkit.api import load_model
    from detkit.data.coco import read_coco
    from detkit.data.dataset import load_dataset
    from detkit.evaluation.coco_metrics import evaluate_coco
    from detkit.evaluation.inference import predict_split
    from detkit.export.runtime import OnnxDetector

    ds = load_dataset(synth_dataset)
    split = ds.split("val")
    torch_det, onnx_det = load_model(ckpt, device="cpu"), load_model(export_small.model_path, device="cpu")
    assert isinstance(onnx_det, OnnxDetector) and onnx_det.class_map == torch_det.class_map and onnx_det.imgsz == torch_det.imgsz
    t_table, o_table = predict_split(torch_det, split, batch_size=4), predict_split(onnx_det, split, batch_size=4)
    assert len(t_table) == len(o_table) > 0
    pseudo = _pseudo_ground_truth(read_coco(split.annotations), t_table)
    for gt in (pseudo, read_coco(split.annotations)):
        ap_t = evaluate_coco(gt, t_table, ds.class_map)["AP"]
        ap_o = evaluate_coco(gt, o_table, ds.class_map)["AP"]
        assert abs(ap_t - ap_o) <= 0.001  # 0.1 AP points
    assert evaluate_coco(pseudo, t_table, ds.class_map)["AP"] > 0.5


def test_detkit_eval_accepts_an_onnx_model(cli, synth_dataset, export_small, tmp_path):
    r = cli("eval", export_small.model_path, "--data", synth_dataset, "--split", "val", "--out", tmp_path, "--json", "--quiet")
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
