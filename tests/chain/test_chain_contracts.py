"""The chain as a user runs it, stage by stage through the CLI, checking the contracts *between* the stages.

train → resume (no --data) → eval (checkpoint) → calibrate → export ONNX → eval (the ONNX file) → predict.
What one stage writes, the next must read as the same thing: the ONNX file evaluates like its checkpoint,
``predict`` gives the boxes eval recorded, and the class map with its original category ids survives every artifact.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

TINY = [
    "model.depth=18",
    "model.freeze_stem=false",
    "model.frozen_bn=false",
    "model.encoder_dim=32",
    "model.encoder_ffn_dim=64",
    "model.hidden_dim=32",
    "model.num_heads=4",
    "model.num_queries=20",
    "model.decoder_layers=1",
    "model.decoder_ffn_dim=64",
    "model.num_denoising=10",
    "train.warmup_iters=2",
    "train.ema_warmups=4",
    "train.multiscale=[1.0]",
    "train.val_batch=4",
    "train.lr=5e-4",
    "train.workers=0",
    "train.batch=4",
]


@pytest.fixture(scope="module")
def chain(synth_dataset, tmp_path_factory):
    """Every stage run once through the CLI, in one module-wide folder; returns the folder and the dataset."""
    import torch

    from detkit.cli.app import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("chain")
    ds = synth_dataset

    def cli(*args):
        code = run([str(a) for a in args])
        assert code == 0, f"detkit {' '.join(map(str, args))} exited {code}"

    try:
        cli(
            "train",
            "recipe:rtdetr-r18",
            "--data",
            ds,
            "--epochs",
            "1",
            "--imgsz",
            "96",
            "--out",
            root / "runs",
            "--name",
            "exp",
            "--quiet",
            *TINY,
        )
        cli("train", "--resume", root / "runs" / "exp", "--epochs", "2", "--quiet")  # no --data: the run knows it
        run_dir = root / "runs" / "exp"
        cli("eval", run_dir, "--data", ds, "--split", "test", "--out", root / "eval", "--name", "ckpt", "--quiet")
        cli(
            "calibrate",
            run_dir,
            "--data",
            ds,
            "--split",
            "calib",
            "--method",
            "platt",
            "--out",
            root / "calibrator.json",
            "--quiet",
        )
        cli("export", "onnx", run_dir, "--out", root / "export" / "model.onnx", "--quiet")
        cli(
            "eval",
            root / "export" / "model.onnx",
            "--data",
            ds,
            "--split",
            "test",
            "--out",
            root / "eval",
            "--name",
            "onnx",
            "--quiet",
        )
        image = sorted((ds / "images" / "test").glob("*.jpg"))[0]
        cli("predict", run_dir, image, "--conf", "0", "--out", root / "predict", "--no-save", "--quiet")
    finally:
        torch.set_num_threads(threads)
    return root, ds, image


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_resume_without_data_continues_the_run(chain):
    root, ds, _ = chain
    rows = (root / "runs" / "exp" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header + epochs 1 and 2: the resumed run went on where it stopped
    assert _summary(root / "runs" / "exp")["dataset"]["absolute"] == str((ds / "dataset.yaml").resolve())


def test_the_onnx_file_evaluates_like_its_checkpoint(chain):
    root, _, _ = chain
    ckpt = json.loads((root / "eval" / "ckpt" / "metrics.json").read_text())
    onnx = json.loads((root / "eval" / "onnx" / "metrics.json").read_text())
    ap = lambda m: m["metrics"]["AP"] if "metrics" in m else m["AP"]  # noqa: E731
    assert abs(ap(ckpt) - ap(onnx)) <= 0.005  # 0.5 AP points
    # stronger than AP: each image's detections have the same scores (sorted), within the export's tolerance
    a = json.loads((root / "eval" / "ckpt" / "predictions.json").read_text())
    b = json.loads((root / "eval" / "onnx" / "predictions.json").read_text())
    assert len(a) == len(b) > 0
    for image_id in {d["image_id"] for d in a}:
        sa = np.sort([d["score"] for d in a if d["image_id"] == image_id])
        sb = np.sort([d["score"] for d in b if d["image_id"] == image_id])
        np.testing.assert_allclose(sa, sb, atol=1e-4)


def test_predict_gives_the_boxes_eval_recorded(chain):
    root, ds, image = chain
    coco = json.loads((ds / "annotations" / "test.json").read_text())
    image_id = next(i["id"] for i in coco["images"] if i["file_name"] == image.name)
    recorded = [
        d for d in json.loads((root / "eval" / "ckpt" / "predictions.json").read_text()) if d["image_id"] == image_id
    ]
    (line,) = (root / "predict" / "predictions.jsonl").read_text().splitlines()
    predicted = json.loads(line)["detections"]
    key = lambda d: -d["score"]  # noqa: E731
    top_eval = sorted(recorded, key=key)[:10]
    top_pred = sorted(predicted, key=key)[:10]
    assert len(top_pred) == len(top_eval) == 10
    for e, p in zip(top_eval, top_pred):
        assert p["category_id"] == e["category_id"]
        assert p["score"] == pytest.approx(e["score"], abs=1e-5)
        np.testing.assert_allclose(p["bbox"], e["bbox"], atol=1e-2)


def test_class_map_and_category_ids_survive_every_artifact(chain):
    import yaml

    from detkit.calibration.io import load_calibrator
    from detkit.data.dataset import load_dataset
    from detkit.models.checkpoint import load_checkpoint

    root, ds, _ = chain
    class_map = load_dataset(ds).class_map
    ids = set(class_map.category_ids)
    assert load_checkpoint(root / "runs" / "exp" / "checkpoints" / "last.pt").class_map == class_map
    assert load_calibrator(root / "calibrator.json").class_map == class_map
    meta = json.loads((root / "export" / "model.json").read_text())
    assert meta["classes"] == {"names": list(class_map.names), "category_ids": list(class_map.category_ids)}
    for name in ("ckpt", "onnx"):
        preds = json.loads((root / "eval" / name / "predictions.json").read_text())
        assert {d["category_id"] for d in preds} <= ids
    (line,) = (root / "predict" / "predictions.jsonl").read_text().splitlines()
    for d in json.loads(line)["detections"]:
        assert d["category_id"] in ids and class_map.names[class_map.category_ids.index(d["category_id"])] == d["class"]
    assert yaml.safe_load((root / "runs" / "exp" / "recipe.yaml").read_text()) is not None
