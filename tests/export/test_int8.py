"""INT8 export target: QDQ structure (quantized groups, float islands, calibrator in float), the AP gate in
model.json, eval/predict/bench on the INT8 file, and every bad-input path (one line, no file left behind)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from detkit_testing import assert_clean_error

CONV = ("Conv",)  # the tests quantize convolutions only: fewer groups, a faster sensitivity pass


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory, ckpt, calibrator_file, synth_dataset):
    """Calibrator embedded, sensitivity pass over the Conv groups, one group forced to stay float."""
    from detkit.export.targets.int8 import export_int8

    out = tmp_path_factory.mktemp("int8") / "model_int8.onnx"
    return export_int8(ckpt, out, calib_data=synth_dataset, calib_images=3, calibrator=calibrator_file, op_types=CONV)


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def test_int8_file_structure_and_metadata(int8_export, synth_dataset):
    from detkit.export.targets.int8 import node_group

    meta = json.loads(int8_export.metadata_path.read_text())
    model = onnx.load(str(int8_export.model_path))
    assert json.loads({p.key: p.value for p in model.metadata_props}["detkit"]) == meta
    assert meta["precision"] == "int8" and meta["int8"]["format"] == "QDQ" and meta["int8"]["op_types"] == ["Conv"]
    cal = meta["int8"]["calibration"]
    assert cal["split"] == "calib" and cal["images"] == 3 and len(cal["files"]) == 3 and cal["seed"] == 0
    assert meta["int8"]["fp32_parity"]["passed"] is True and meta["parity"] is None

    # the accuracy gate: both APs measured on the default evaluation split (val) and recorded
    acc = meta["accuracy"]
    assert acc["split"] == "val" and acc["fp32"]["num_images"] == acc["int8"]["num_images"] == 6
    assert (
        acc["ap_drop"] == pytest.approx(100 * (acc["fp32"]["AP"] - acc["int8"]["AP"]), abs=1e-3)
        and acc["ap_drop"] <= acc["max_ap_drop"] == 1.0
    )

    # sensitivity: every Conv group measured once, sorted worst first
    sens = meta["int8"]["sensitivity"]
    groups = {s["group"] for s in sens}
    assert {"backbone.conv1", "backbone.res_layers.0", "encoder.input_proj", "decoder.input_proj"} <= groups
    assert [(-s["ap_drop"], -s["score_error"]) for s in sens] == sorted(
        (-s["ap_drop"], -s["score_error"]) for s in sens
    )
    assert set(meta["int8"]["quantized_groups"]) | set(meta["int8"]["float_groups"]) == groups

    # QDQ: every Conv of a quantized group reads dequantized int8 weights; nothing outside the model scope
    # (post-processor, embedded calibrator) and no float group touches a DequantizeLinear
    prod = _producers(model)
    assert meta["stage_scopes"] == ["res_layers", "layers"]  # the RT-DETR model names its stage lists
    quantized = set(meta["int8"]["quantized_groups"])
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(
        prod[n.input[1]].op_type == "DequantizeLinear"
        for n in convs
        if node_group(n.name, meta["stage_scopes"]) in quantized
    )
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        fed_by_dq = any(i in prod and prod[i].op_type == "DequantizeLinear" for i in n.input)
        if node_group(n.name, meta["stage_scopes"]) not in quantized:
            assert not fed_by_dq or n.op_type != "Conv", n.name
        if n.name.startswith("/calibrator/") or not n.name.startswith("/module/"):
            assert not fed_by_dq, n.name
    assert any(n.name.startswith("/calibrator/") for n in model.graph.node)
    assert meta["calibrator"]["method"] == "platt"


def test_int8_outputs_track_pytorch(int8_export, ckpt):
    from detkit.api import load_model
    from detkit.export.runtime import OnnxDetector

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (80, 120, 3), dtype=np.uint8) for _ in range(2)]
    torch_scores = [np.sort(d.scores)[::-1] for d in load_model(ckpt, device="cpu").predict(images, conf=-1)]
    int8 = OnnxDetector(int8_export.model_path)
    raw = [np.sort(r[3])[::-1] for r in int8.infer(images)]
    for t, q in zip(torch_scores, raw):
        assert np.abs(t[:10] - q[:10]).max() < 0.05  # 8-bit arithmetic: close, not equal


def test_default_op_types_keep_conv_chains_int8_and_decoder_elementwise_float(export_small, synth_dataset, tmp_path):
    """The default op types: the ops between the backbone's and encoder's convolutions are quantized with them (so
    onnxruntime fuses int8 chains), the decoder's element-wise ops (sampling locations) never are."""
    from detkit.export.targets.int8 import COMPUTE_OP_TYPES, CONNECTIVE_OP_TYPES, candidate_groups, quantize_onnx

    fp32 = onnx.load(str(export_small.model_path))
    groups = candidate_groups(fp32, stage_scopes=("res_layers", "layers"))
    types = {n.name: n.op_type for n in fp32.graph.node}
    connective = {g: [n for n in ns if types[n] in CONNECTIVE_OP_TYPES] for g, ns in groups.items()}
    assert connective["backbone.res_layers.0"] and connective["encoder.fpn_blocks"]  # residual Add/Relu, SiLU
    assert all(not ns for g, ns in connective.items() if g.startswith("decoder"))
    assert all(types[n] in COMPUTE_OP_TYPES for g, ns in groups.items() if g.startswith("decoder") for n in ns)

    out = tmp_path / "int8.onnx"
    images = sorted((synth_dataset / "images" / "calib").iterdir())
    report = quantize_onnx(export_small.model_path, out, images, calib_images=2, sensitivity=False)
    model = onnx.load(str(out))
    prod = _producers(model)
    adds = [n for n in model.graph.node if n.op_type == "Add" and n.name.startswith("/module/backbone/res_layers")]
    assert adds and all(prod[i].op_type == "DequantizeLinear" for n in adds for i in n.input)  # int8 residuals
    compute = sum(types[n] in COMPUTE_OP_TYPES for ns in groups.values() for n in ns)
    assert report.quantized_nodes > compute  # the connective ops count too


def test_eval_and_predict_take_the_int8_file(cli, int8_export, synth_dataset, tmp_path):
    import cv2

    r = cli(
        "eval",
        int8_export.model_path,
        "--data",
        synth_dataset,
        "--split",
        "test",
        "--out",
        tmp_path / "ev",
        "--json",
        "--quiet",
    )
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    assert payload["num_images"] == 6 and payload["AP"] is not None
    cv2.imwrite(str(tmp_path / "a.png"), np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    r = cli("predict", int8_export.model_path, tmp_path / "a.png", "--out", tmp_path / "pred", "--conf", "0", "--json")
    assert r.code == 0, r.text
    assert json.loads(r.out)["backend"] == "onnxruntime"


def test_bench_reports_ap_and_latency_per_variant(export_small, synth_dataset):
    from detkit.stages.bench import benchmark

    result = benchmark(
        export_small.model_path,
        backends=["onnxruntime"],
        variants=["fp32", "int8"],
        threads=[1],
        iters=1,
        data=synth_dataset,
        split="test",
        int8_options={"sensitivity": False, "calib_images": 2, "op_types": CONV},
    )
    assert [(r.precision, r.batch, r.threads) for r in result.rows] == [("fp32", 1, 1), ("int8", 1, 1)]
    assert set(result.accuracy) == {"fp32", "int8"} and all(
        a["split"] == "test" and a["num_images"] == 6 for a in result.accuracy.values()
    )
    for r in result.rows:
        assert r.ap == result.accuracy[r.precision]["AP"] and r.total_ms > 0
    assert any("int8 variant" in n for n in result.notes)


def _dataset_copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--int8"], "--int8 needs calibration images"),
        (["--calib-data", "DATA"], "only applies to an INT8 export"),
        (["--int8", "--calib-data", "DATA", "--calib-split", "nope"], "no split 'nope'"),
        (["--int8", "--calib-data", "DATA", "--int8-method", "kl"], "unknown INT8 calibration method"),
        (["--int8", "--calib-data", "DATA", "--fp16"], "two different export precisions"),
    ],
)
def test_int8_bad_options(cli, ckpt, synth_dataset, tmp_path, args, needle):
    out = tmp_path / "m.onnx"
    args = [str(synth_dataset) if a == "DATA" else a for a in args]
    assert_clean_error(cli("export", "onnx", ckpt, "--out", out, *args), needle)
    assert list(tmp_path.iterdir()) == []


def test_int8_calibration_split_without_images(cli, ckpt, synth_dataset, tmp_path):
    data = _dataset_copy(synth_dataset, tmp_path / "data")
    ann = data / "annotations" / "calib.json"
    ann.write_text(json.dumps({**json.loads(ann.read_text()), "images": [], "annotations": []}))
    out = tmp_path / "out" / "m.onnx"
    assert_clean_error(
        cli("export", "onnx", ckpt, "--out", out, "--int8", "--calib-data", data),
        "calibration split 'calib' has no images",
        "calib.json",
    )
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_bench_int8_variant_needs_data(cli, export_small, tmp_path):
    assert_clean_error(
        cli(
            "bench",
            export_small.model_path,
            "--backends",
            "onnxruntime",
            "--variants",
            "int8",
            "--out",
            tmp_path / "b.json",
        ),
        "int8 variant needs calibration images",
    )
    assert_clean_error(
        cli(
            "bench",
            export_small.model_path,
            "--backends",
            "onnxruntime",
            "--variants",
            "int4",
            "--out",
            tmp_path / "b.json",
        ),
        "unknown precision variant",
    )
    assert not (tmp_path / "b.json").exists()


def _outlier_checkpoint(path, class_map):
    """A model with one huge stem channel: fine in float, while 8-bit ranges stretched by it flatten everything else."""
    import torch
    from export.tiny import tiny_checkpoint

    tiny_checkpoint(path, class_map, imgsz=96, seed=1)
    ck = torch.load(path, weights_only=True)
    sd = ck["model"]
    sd["backbone.conv1.conv1_1.norm.weight"][0] *= 1e4
    sd["backbone.conv1.conv1_1.norm.bias"][0] = 1e4
    torch.save(ck, path)
    return path


def test_int8_refused_when_ap_drops_too_much(synth_dataset, class_map, tmp_path):
    """Ground truth = the float model's own top detections, so fp32 AP is high and the collapse shows."""
    from export.test_runtime import _pseudo_ground_truth

    from detkit.api import load_model
    from detkit.data.coco import read_coco, write_coco
    from detkit.data.dataset import load_dataset
    from detkit.errors import DetkitError
    from detkit.evaluation.inference import predict_split
    from detkit.export.targets.int8 import export_int8

    ckpt = _outlier_checkpoint(tmp_path / "outlier.pt", class_map)
    data = _dataset_copy(synth_dataset, tmp_path / "data")
    ds, det = load_dataset(data), load_model(ckpt, device="cpu")
    for split in ("calib", "val"):
        spec = ds.split(split)
        write_coco(spec.annotations, _pseudo_ground_truth(read_coco(spec.annotations), predict_split(det, spec)))
    out = tmp_path / "out" / "m_int8.onnx"
    with pytest.raises(DetkitError) as err:
        export_int8(ckpt, out, calib_data=data, calib_images=3, max_float_groups=0, op_types=CONV)
    message = str(err.value)
    assert message.startswith(f"{out}: INT8 costs") and "more than max_ap_drop 1" in message and "\n" not in message
    assert "worst groups: backbone." in message or "worst groups: encoder." in message, message
    assert "detkit-int8" not in message  # never the private temporary file
    assert not out.exists() and not out.with_suffix(".json").exists()
