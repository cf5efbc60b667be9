"""OpenVINO backend of exported files: the same detections as onnxruntime (plain and calibrated graphs), eval and
predict through the CLI, bench rows per backend, and the one-line errors (extra missing, source not an .onnx file).

Tests that run OpenVINO skip when the optional extra is not installed; the error paths run either way."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from detkit_testing import assert_clean_error, randomise_norm_stats
from export.tiny import tiny_calibrator, tiny_checkpoint

MISSING = "openvino is not installed (pip install 'detkit[openvino]')"


@pytest.fixture(scope="module")
def ov():
    return pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def class_map():
    from detkit.data.synth import synth_class_map

    return synth_class_map()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, class_map):
    """The tiny checkpoint with non-trivial BN statistics and box heads: distinct scores, so the top-k order is
    not decided by ties (which two runtimes may break differently)."""
    from detkit.inference import open_detector
    from detkit.models.checkpoint import save_checkpoint

    path = tiny_checkpoint(tmp_path_factory.mktemp("ov_ckpt") / "tiny.pt", class_map, imgsz=96)
    det = open_detector(path)
    randomise_norm_stats(det.module, seed=0)
    recipe = det.recipe.model_dump(mode="json")
    return save_checkpoint(path, model=det.module.state_dict(), class_map=class_map, recipe=recipe)


@pytest.fixture(scope="module")
def plain_onnx(tmp_path_factory, ckpt):
    from detkit.export import export_onnx

    return export_onnx(ckpt, tmp_path_factory.mktemp("ov_plain") / "model.onnx", verify=False).model_path


@pytest.fixture(scope="module")
def calibrated_onnx(tmp_path_factory, ckpt, class_map):
    from detkit.calibration.io import save_calibrator
    from detkit.export import export_onnx

    root = tmp_path_factory.mktemp("ov_cal")
    cal = save_calibrator(tiny_calibrator(class_map), root / "calibrator.json")
    return export_onnx(ckpt, root / "model.onnx", calibrator=cal, verify=False).model_path


def _images(synth_dataset) -> list:
    rng = np.random.default_rng(0)
    files = sorted((synth_dataset / "images" / "val").iterdir())[:3]
    return [*files, rng.integers(0, 256, (70, 130, 3), dtype=np.uint8)]


def _assert_same_outputs(ort_out, ov_out):
    """Per image the same detections: a one-to-one matching with equal labels, boxes within 1e-3 px and scores
    (calibrated and raw) within 1e-4. Matched as sets, because detections of (nearly) equal score may come out in
    either order from two runtimes' top-k."""
    from scipy.optimize import linear_sum_assignment

    assert len(ort_out) == len(ov_out)
    for (l1, b1, s1, r1), (l2, b2, s2, r2) in zip(ort_out, ov_out):
        assert len(l1) == len(l2)
        np.testing.assert_allclose(s1, s2, rtol=0, atol=1e-4)  # both sorted by score
        ok = (
            (l1[:, None] == l2[None])
            & (np.abs(b1[:, None] - b2[None]).max(-1) <= 1e-3)
            & (np.abs(s1[:, None] - s2[None]) <= 1e-4)
            & (np.abs(r1[:, None] - r2[None]) <= 1e-4)
        )
        rows, cols = linear_sum_assignment(~ok)
        assert ok[rows, cols].all(), f"{(~ok[rows, cols]).sum()} of {len(l1)} detections differ"


@pytest.mark.parametrize("graph", ["plain_onnx", "calibrated_onnx"])
def test_openvino_detections_equal_onnxruntime(ov, request, graph, synth_dataset):
    from detkit.inference import Detector, OnnxDetector, OpenVinoDetector, open_detector

    path = request.getfixturevalue(graph)
    ort_det = open_detector(path)
    ov_det = open_detector(path, backend="openvino", batch_size=2)  # batches of 2 and a last one of 2: dynamic batch
    assert isinstance(ort_det, OnnxDetector) and isinstance(ov_det, OpenVinoDetector) and isinstance(ov_det, Detector)
    assert ov_det.backend == "openvino" and ov_det.class_map == ort_det.class_map and ov_det.imgsz == ort_det.imgsz
    assert (ov_det.calibrator is None) == (graph == "plain_onnx") == (ort_det.calibrator is None)
    images = _images(synth_dataset)
    ort_out, ov_out = ort_det.infer(images), ov_det.infer(images)
    _assert_same_outputs(ort_out, ov_out)
    if graph == "calibrated_onnx":  # the calibrated scores are the graph's own, not the raw ones
        assert not np.allclose(ov_out[0][2], ov_out[0][3])
    a, b = ort_det.predict(images, conf=0.2), ov_det.predict(images, conf=0.2)
    assert [len(d) for d in a] == [len(d) for d in b]
    for d1, d2 in zip(a, b):
        np.testing.assert_array_equal(d1.category_ids, d2.category_ids)


def test_eval_cli_openvino_same_ap(ov, cli, plain_onnx, synth_dataset, tmp_path):
    runs = {}
    for backend in ("onnxruntime", "openvino"):
        r = cli(
            "eval",
            plain_onnx,
            "--data",
            synth_dataset,
            "--split",
            "val",
            "--backend",
            backend,
            "--out",
            tmp_path,
            "--name",
            backend,
            "--json",
        )
        assert r.code == 0, r.text
        runs[backend] = json.loads(r.out)
    ort_m, ov_m = runs["onnxruntime"], runs["openvino"]
    assert ov_m["num_images"] == ort_m["num_images"] == 6
    for k in ("AP", "AP50", "AP75"):
        assert ov_m[k] == pytest.approx(ort_m[k], abs=1e-6)


def test_predict_cli_openvino(ov, cli, plain_onnx, synth_dataset, tmp_path):
    images = synth_dataset / "images" / "val"
    lines = {}
    for backend in ("onnxruntime", "openvino"):
        out = tmp_path / backend
        r = cli(
            "predict", plain_onnx, images, "--backend", backend, "--conf", "0.2", "--out", out, "--no-save", "--json"
        )
        assert r.code == 0, r.text
        assert json.loads(r.out)["backend"] == backend
        lines[backend] = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines["openvino"]) == len(lines["onnxruntime"]) == 6
    for a, b in zip(lines["onnxruntime"], lines["openvino"]):
        assert a["source"] == b["source"] and len(a["detections"]) == len(b["detections"])


def test_bench_rows_per_backend(ov, cli, plain_onnx, synth_dataset, tmp_path):
    from detkit.stages.bench import benchmark

    result = benchmark(
        plain_onnx, backends=["onnxruntime", "openvino"], iters=1, warmup=3, threads=[1], data=synth_dataset
    )
    assert [(r.backend, r.precision) for r in result.rows] == [("onnxruntime", "fp32"), ("openvino", "fp32")]
    assert all(r.total_ms > 0 for r in result.rows)
    assert result.accuracy["openvino:fp32"]["AP"] == pytest.approx(result.accuracy["fp32"]["AP"], abs=1e-6)
    r = cli(
        "bench",
        plain_onnx,
        "--backends",
        "onnxruntime,openvino",
        "--iters",
        "1",
        "--threads",
        "1",
        "--out",
        tmp_path / "bench.json",
    )
    assert r.code == 0, r.text
    assert "backend" in r.out and "openvino" in r.out and "onnxruntime" in r.out


def test_missing_extra_is_one_line(cli, plain_onnx, synth_dataset, tmp_path, monkeypatch):
    from detkit.errors import DetkitError
    from detkit.inference import open_detector

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(DetkitError) as e:
        open_detector(plain_onnx, backend="openvino")
    assert e.value.message == MISSING
    out = tmp_path / "pred"
    assert_clean_error(
        cli("predict", plain_onnx, synth_dataset / "images" / "val", "--backend", "openvino", "--out", out), MISSING
    )
    assert not out.exists()
    assert_clean_error(
        cli("eval", plain_onnx, "--data", synth_dataset, "--backend", "openvino", "--out", tmp_path, "--name", "ev"),
        MISSING,
    )
    assert not (tmp_path / "ev").exists()
    assert_clean_error(
        cli("bench", plain_onnx, "--backends", "openvino", "--iters", "1", "--out", tmp_path / "b.json"), MISSING
    )
    assert not (tmp_path / "b.json").exists()


def test_backend_needs_an_onnx_source(cli, ckpt, plain_onnx, synth_dataset, tmp_path):
    from detkit.errors import DetkitError
    from detkit.inference import open_detector

    with pytest.raises(DetkitError) as e:
        open_detector(ckpt, backend="openvino")
    assert str(ckpt) in str(e.value) and ".onnx" in str(e.value)
    r = cli("predict", ckpt, synth_dataset / "images" / "val", "--backend", "openvino", "--out", tmp_path / "p")
    assert_clean_error(r, str(ckpt), "exported .onnx")
    assert len(r.err.strip().splitlines()) <= 2  # the error line and its hint, no traceback
    assert not (tmp_path / "p").exists()
    assert_clean_error(
        cli("eval", plain_onnx, "--data", synth_dataset, "--backend", "tensorrt", "--out", tmp_path),
        "unknown backend 'tensorrt'",
        "openvino",
    )
