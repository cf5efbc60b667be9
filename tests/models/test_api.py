"""``detkit.load_model`` / ``Detector``: every source kind, class-map safety, predictions in pixels."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import detkit
from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.models.checkpoint import save_checkpoint, save_weights
from detkit.models.rtdetr.convert_weights import to_official

CLASSES = ClassMap(("a", "b", "c", "d", "e"), (3, 5, 7, 9, 11))


@pytest.fixture
def tiny_recipe(tmp_path, make_tiny_config):
    cfg = make_tiny_config()
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"base": "recipe:rtdetr-r18", "model": cfg.model_dump()}))
    return path


@pytest.fixture
def run_dir(tmp_path, tiny_model, tiny_recipe):
    from detkit.config.recipe import resolve_recipe

    recipe = resolve_recipe(tiny_recipe).model_dump(mode="json")
    recipe["train"]["imgsz"] = 128
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "last.pt", model={}, class_map=CLASSES, recipe=recipe)  # broken on purpose
    save_checkpoint(run / "checkpoints" / "best.pt", model=tiny_model.state_dict(), class_map=CLASSES, recipe=recipe)
    return run


def test_import_detkit_stays_light():
    code = (
        "import sys, detkit, detkit.inference; assert 'torch' not in sys.modules; "
        "print(detkit.load_model.__module__, detkit.Detector.__name__, detkit.open_detector.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["detkit.api", "TorchDetector", "detkit.inference.resolve"]


def test_detector_class_wraps_any_module(tiny_model):
    """``detkit.Detector(module, class_map, imgsz)`` (training wraps its EMA model so) has the Detector interface."""
    from detkit.inference import Detector as DetectorProtocol

    det = detkit.Detector(tiny_model, CLASSES, 64, device="cpu")
    assert isinstance(det, DetectorProtocol) and det.backend == "torch" and det.source is None
    (d,) = det.predict(np.zeros((50, 70, 3), np.uint8))
    assert len(d) == 150 and d.boxes.max() <= 70.01


def test_run_dir_prefers_best_and_predicts_in_pixels(run_dir, tiny_model, tmp_path):
    det = detkit.load_model(run_dir, device="cpu")
    assert det.class_map == CLASSES and det.imgsz == (128, 128) and det.device.type == "cpu"
    assert torch.equal(det.module.decoder.enc_score_head.weight, tiny_model.decoder.enc_score_head.weight)
    import cv2

    img = np.random.default_rng(0).integers(0, 256, (90, 200, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "img.png"), img[:, :, ::-1])
    dets = det.predict([img, tmp_path / "img.png"], conf=0.0)
    assert len(dets) == 2 and len(dets[0]) == 150  # top-300 over 30 queries × 5 classes = all 150 pairs
    np.testing.assert_allclose(dets[0].boxes, dets[1].boxes, atol=1e-4)
    # the same numbers as module + postprocess by hand, scaled to the 200×90 original
    from detkit.data.images import to_batch
    from detkit.models.postprocess import postprocess

    batch, sizes = to_batch([img], (128, 128))
    with torch.no_grad():
        out = tiny_model(batch)
    labels, boxes, scores = postprocess(out["logits"], out["boxes"], sizes)
    np.testing.assert_allclose(dets[0].scores, scores[0].numpy(), atol=1e-6)
    np.testing.assert_array_equal(dets[0].category_ids, np.array(CLASSES.category_ids)[labels[0].numpy()])
    high = det.predict(img, conf=float(np.median(dets[0].scores)))[0]
    assert 0 < len(high) < len(dets[0])
    table = det.predict_table([img, img], image_ids=[10, 11], conf=0.0)
    assert set(table.image_ids.tolist()) == {10, 11} and set(table.category_ids.tolist()) <= set(CLASSES.category_ids)


def test_checkpoint_file_and_class_map_safety(run_dir):
    best = run_dir / "checkpoints" / "best.pt"
    other = ClassMap.from_names(["x", "y"])
    with pytest.raises(DetkitError, match="class map mismatch") as e:
        detkit.load_model(best, class_map=other)
    assert "a(id 3)" in str(e.value) and "x(id 1)" in str(e.value) and "reinit" in e.value.hint
    det = detkit.load_model(best, class_map=other, reinit_head=True)
    assert det.module.decoder.enc_score_head.out_features == 2 and det.class_map == other
    same_count = ClassMap.from_names(["v", "w", "x", "y", "z"])
    det = detkit.load_model(best, class_map=same_count, reinit_head=True)
    assert det.class_map == same_count


def test_recipe_with_foreign_weights(tiny_recipe, tiny_model, tmp_path):
    sf = save_weights(tmp_path / "w.safetensors", tiny_model.state_dict())
    det = detkit.load_model(tiny_recipe, weights=sf, imgsz=64)
    assert det.class_map.names == tuple(f"class_{i}" for i in range(5)) and det.class_map.category_ids == (
        0,
        1,
        2,
        3,
        4,
    )
    pth = tmp_path / "official.pth"
    torch.save({"ema": {"module": to_official(tiny_model.state_dict(), "v1")}}, pth)
    det = detkit.load_model(tiny_recipe, weights=pth, class_map=CLASSES)
    assert torch.equal(det.module.backbone.conv1.conv1_1.conv.weight, tiny_model.backbone.conv1.conv1_1.conv.weight)
    with pytest.raises(DetkitError, match="trained for 5 classes but the model has 2"):
        detkit.load_model(tiny_recipe, weights=pth, class_map=ClassMap.from_names(["x", "y"]))
    det = detkit.load_model(tiny_recipe, weights=pth, class_map=ClassMap.from_names(["x", "y"]), reinit_head=True)
    assert len(det.class_map) == 2


def test_bad_sources(tmp_path, run_dir, tiny_recipe):
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(DetkitError, match="no checkpoints/best.pt or checkpoints/last.pt"):
        detkit.load_model(tmp_path / "empty_run")
    with pytest.raises(DetkitError, match="weights= goes with recipe"):
        detkit.load_model(run_dir, weights="x.pth")
    with pytest.raises(DetkitError, match="nope.pt: model not found"):
        detkit.load_model(tmp_path / "nope.pt")
    with pytest.raises(DetkitError, match="weights file not found"):
        detkit.load_model(tiny_recipe, weights=tmp_path / "nope.safetensors")
    with pytest.raises(DetkitError, match="unknown device"):
        detkit.load_model(tiny_recipe, device="tpu9")
    with pytest.raises(DetkitError, match="image ids"):
        detkit.load_model(tiny_recipe, imgsz=64).predict_table([np.zeros((8, 8, 3), np.uint8)], [1, 2])
