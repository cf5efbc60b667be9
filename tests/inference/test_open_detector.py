"""``open_detector``: every source gives an object with the Detector interface; bad inputs are one clear line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.inference import Detector, OnnxDetector, TorchDetector, open_detector

CLASSES = ClassMap(("a", "b", "c", "d", "e"), (3, 5, 7, 9, 11))


def _check_protocol(det, backend: str) -> None:
    assert isinstance(det, Detector) and det.backend == backend
    img = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    (d,) = det.predict([img], conf=0.0)
    assert d.boxes.shape == (len(d), 4) and len(d) > 0
    assert set(d.category_ids.tolist()) <= set(det.class_map.category_ids)
    table = det.predict_table([img, img], [4, 5], conf=0.0)
    assert set(table.image_ids.tolist()) == {4, 5} and len(table) == 2 * len(d)


def test_torch_and_onnx_detectors_satisfy_the_protocol(official_files, tmp_path):
    from detkit.export import export_onnx

    det = open_detector(official_files["pth"], device="cpu", class_map=CLASSES)
    assert isinstance(det, TorchDetector) and det.class_map == CLASSES and det.imgsz == (160, 160)
    _check_protocol(det, "torch")
    assert open_detector(det) is det  # a ready detector is returned as is
    result = export_onnx(det, tmp_path / "m.onnx", verify=False)
    assert result.metadata["source"]["path"] == str(official_files["pth"])  # the export remembers the weights file
    onnx_det = open_detector(tmp_path / "m.onnx", device="cpu")
    assert (
        isinstance(onnx_det, OnnxDetector) and onnx_det.class_map == CLASSES and onnx_det.source == tmp_path / "m.onnx"
    )
    _check_protocol(onnx_det, "onnxruntime")


def test_class_map_of_bare_weights(official_files, tmp_path, synth_dataset):
    det = open_detector(official_files["safetensors"], device="cpu")
    assert det.class_map.names == tuple(f"class_{i}" for i in range(5)) and det.class_map.category_ids == (
        0,
        1,
        2,
        3,
        4,
    )
    names = tmp_path / "names.txt"
    names.write_text("# our classes\ncat\ndog\n\nfish\nbird\ncow\n")
    det = open_detector(official_files["safetensors"], class_map=names)
    assert det.class_map == ClassMap(("cat", "dog", "fish", "bird", "cow"), (1, 2, 3, 4, 5))
    from detkit.data.dataset import load_dataset

    det = open_detector(official_files["pth"], class_map=synth_dataset / "dataset.yaml")
    assert det.class_map == load_dataset(synth_dataset).class_map
    three = ClassMap.from_names(["x", "y", "z"])
    with pytest.raises(DetkitError, match="trained for 5 classes but the model has 3") as e:
        open_detector(official_files["pth"], class_map=three)
    assert "rtdetrv2_r18vd.pth" in str(e.value) and "reinit" in e.value.hint
    assert len(open_detector(official_files["pth"], class_map=three, reinit_head=True).class_map) == 3


def test_recipe_with_weights_and_a_recipe_that_does_not_fit(official_files, r18_5cls, tmp_path):
    import yaml

    cfg, model = r18_5cls
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"base": "recipe:rtdetr-r18", "model": cfg.model_dump()}))
    det = open_detector(recipe, weights=official_files["pth"], class_map=CLASSES)
    assert det.imgsz == (640, 640) and det.source == official_files["pth"]  # a recipe keeps its own size
    assert torch.equal(det.module.decoder.enc_score_head.weight, model.decoder.enc_score_head.weight)
    with pytest.raises(DetkitError) as e:
        open_detector("recipe:rtdetr-r50", weights=official_files["pth"])
    assert "rtdetrv2_r18vd.pth" in str(e.value) and "RT-DETR-R18" in e.value.hint


def _bad_files(root, official_files):
    """(file, words the error must contain) for each kind of broken input."""
    import torchvision
    from safetensors.torch import save_file

    from detkit.models.checkpoint import read_weights
    from detkit.models.rtdetr.convert_weights import to_detkit

    resnet = root / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), resnet)
    truncated = root / "truncated.pth"
    data = official_files["pth"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    unknown = root / "unknown.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(unknown))
    extra = root / "extra.safetensors"
    sd = to_detkit(read_weights(official_files["pth"])[0]).state_dict
    save_file({**sd, "decoder.extra_head.weight": torch.zeros(1)}, str(extra))
    (root / "empty.pth").write_bytes(b"")
    (root / "empty.safetensors").write_bytes(b"")
    (root / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    (root / "junk.bin").write_bytes(b"PK\x03\x04 not a zip archive")
    return [
        (resnet, "unrecognised weight layout"),
        (truncated, "truncated or corrupt"),
        (unknown, "unrecognised weight layout"),
        (extra, "unexpected decoder.extra_head.weight"),
        (root / "empty.pth", "empty.pth"),
        (root / "empty.safetensors", "cannot read safetensors file"),
        (root / "junk.safetensors", "cannot read safetensors file"),
        (root / "junk.bin", "junk.bin"),
        (root / "missing.pth", "model not found"),
    ]


def test_bad_weight_files_are_one_clear_error_naming_the_file(official_files, tmp_path):
    for path, needle in _bad_files(tmp_path, official_files):
        with pytest.raises(DetkitError) as e:
            open_detector(path)
        msg = str(e.value)
        assert str(path) in msg and needle in msg and "\n" not in msg, msg


def test_checkpoint_class_map_mismatch_needs_reinit_head(r18_5cls, tmp_path):
    from detkit.config.recipe import resolve_recipe
    from detkit.models.checkpoint import save_checkpoint

    cfg, model = r18_5cls
    recipe = resolve_recipe("recipe:rtdetr-r18").model_copy(update={"model": cfg}).model_dump(mode="json")
    ckpt = save_checkpoint(tmp_path / "best.pt", model=model.state_dict(), class_map=CLASSES, recipe=recipe)
    other = ClassMap.from_names(["v", "w", "x", "y", "z"])
    with pytest.raises(DetkitError, match="class map mismatch") as e:
        open_detector(ckpt, class_map=other)
    assert "best.pt" in str(e.value) and "reinit" in e.value.hint
    assert open_detector(ckpt, class_map=other, reinit_head=True).class_map == other
    with pytest.raises(DetkitError, match="weights= goes with recipe"):
        open_detector(ckpt, weights=ckpt)
    with pytest.raises(DetkitError, match="class names file is empty"):
        (tmp_path / "none.txt").write_text("\n# nothing\n")
        open_detector(ckpt, class_map=tmp_path / "none.txt")
