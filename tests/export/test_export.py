"""ONNX export: parity with PyTorch (batch 1 and 3, 640 and 480×640, with and without a calibrator), decoder
truncation, dynamic batch, simplification, fp16, and every bad-input path."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from detkit_testing import assert_clean_error


def _graph_io(path):
    g = onnx.load(str(path), load_external_data=False).graph
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    return {v.name: dims(v) for v in g.input}, {v.name: dims(v) for v in g.output}


def _check_parity(report, batch_sizes=(1, 3)):
    assert report.passed and report.batch_sizes == list(batch_sizes)
    assert report.max_abs_diff_scores <= 1e-4 and report.max_abs_diff_boxes <= 1e-4
    assert report.unpaired == 0 and report.topk_label_agreement == 1.0
    for key in ("1", "3"):
        assert report.per_batch[key]["max_abs_diff_scores"] <= 1e-4


def test_640_with_calibrator_and_decoder_truncation(export_640, ckpt, calibrator_file, class_map):
    from detkit.api import Detector, load_model
    from detkit.calibration.apply import calibrate_scores
    from detkit.calibration.io import load_calibrator
    from detkit.export.runtime import OnnxDetector

    _check_parity(export_640.parity)
    meta = json.loads(export_640.metadata_path.read_text())
    assert meta["imgsz"] == [640, 640] and meta["opset"] == 17 and meta["dynamic_batch"] is True
    assert meta["decoder_layers"] == 1 and meta["decoder_layers_trained"] == 2
    assert meta["calibrator"]["method"] == "platt" and meta["calibrator"]["thresholds"]["values"][
        class_map.names[0]
    ] == pytest.approx(0.3)
    assert meta["classes"] == class_map.to_dict() and meta["input_dtype"] == "uint8"
    assert meta["source"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["parity"]["max_abs_diff_scores"] == export_640.parity.max_abs_diff_scores
    assert meta["parity"]["max_calibration_error"] <= 1e-4 == export_640.parity.tolerance["scores"]
    op = meta["operating_point"]  # recorded for predict; the graph keeps every detection
    assert op["applied_in_graph"] is False and op["thresholds"][class_map.names[0]] == pytest.approx(0.3)
    inputs, outputs = _graph_io(export_640.model_path)
    assert inputs == {"images": ["N", 3, 640, 640], "orig_sizes": ["N", 2]}
    assert list(outputs) == ["labels", "boxes", "scores", "raw_scores"]

    # the graph's scores are the calibrator's numpy apply of its raw scores,
    # and the raw scores are the truncated model's
    det = OnnxDetector(export_640.model_path)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (300, 500, 3), dtype=np.uint8), rng.integers(0, 256, (200, 120, 3), dtype=np.uint8)]
    (labels, boxes, scores, raw), _ = det.infer(images, batch_size=2)
    cal = load_calibrator(calibrator_file)
    np.testing.assert_allclose(scores, calibrate_scores(cal, raw, labels), atol=1e-6)
    # parity above was against the truncated PyTorch model; the full-depth model answers differently
    full = load_model(ckpt, device="cpu")
    two_layers = Detector(full.module, class_map, (640, 640), "cpu").predict(images[:1], conf=-1)[0]
    assert np.abs(np.sort(two_layers.scores) - np.sort(raw)).max() > 1e-3


def test_nonsquare_without_calibrator(export_480x640):
    from detkit.export.runtime import OnnxDetector

    _check_parity(export_480x640.parity)
    inputs, outputs = _graph_io(export_480x640.model_path)
    assert inputs["images"] == ["N", 3, 480, 640] and list(outputs) == ["labels", "boxes", "scores"]
    onnx.checker.check_model(str(export_480x640.model_path), full_check=True)
    det = OnnxDetector(export_480x640.model_path)
    assert det.imgsz == (480, 640) and det.calibrator is None
    assert export_480x640.metadata["decoder_layers"] == 2 and export_480x640.metadata["calibrator"] is None


def test_dynamic_batch_gives_the_same_answer_per_image(export_small):
    from detkit.export.runtime import OnnxDetector

    det = OnnxDetector(export_small.model_path)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (rng.integers(50, 200), rng.integers(50, 200), 3), dtype=np.uint8) for _ in range(5)]
    together = det.infer(images, batch_size=5)
    alone = [det.infer([im], batch_size=1)[0] for im in images]
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], atol=1e-3)
        np.testing.assert_allclose(a[2], b[2], atol=1e-6)


def test_cli_export_with_simplify(cli, ckpt, tmp_path):
    from detkit.export.targets.onnx import batch_dims_dynamic

    out = tmp_path / "m.onnx"
    r = cli("export", "onnx", ckpt, "--out", out, "--simplify", "--json")
    assert r.code == 0, r.text
    payload = json.loads(r.out)
    assert payload["parity"]["passed"] and payload["model"] == str(out)
    assert payload["simplified"] is True and payload["warnings"] == [], payload
    assert batch_dims_dynamic(out) and (tmp_path / "m.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]  # no temporaries left


def test_simplified_graphs_that_lose_the_batch_dim_or_disagree_are_rejected(ckpt, tmp_path, monkeypatch):
    import onnxslim
    from onnx import numpy_helper

    from detkit.export.targets.onnx import batch_dims_dynamic, export_onnx

    def broken_slim(model, **kwargs):
        if not kwargs:  # first attempt: pins the batch dimension to 1
            for v in [*model.graph.input, *model.graph.output]:
                v.type.tensor_type.shape.dim[0].dim_value = 1
        else:  # second attempt: silently changes a weight (what a wrong constant fold looks like)
            for init in model.graph.initializer:
                if init.data_type == onnx.TensorProto.FLOAT and np.prod(init.dims) > 100:
                    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
        return model

    monkeypatch.setattr(onnxslim, "slim", broken_slim)
    result = export_onnx(ckpt, tmp_path / "m.onnx", simplify=True)
    assert not result.simplified and result.parity.passed
    (warning,) = result.warnings
    assert (
        "fixed the dynamic batch dimension" in warning
        and "disagrees with PyTorch" in warning
        and "kept the unsimplified graph" in warning
    )
    assert batch_dims_dynamic(result.model_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]


def test_fp16_export_is_verified_with_its_own_tolerance(class_map, tmp_path):
    """fp16 noise (~1e-3) exceeds the score gaps of a random model, so the discrete choices (query selection, the
    top-k boundary) could legitimately flip; here every token is a query (12²+6²+3² = 189 at 96 px) and every
    (query, class) pair is returned, so both runtimes hold the same candidates and the values are what is compared."""
    from export.tiny import tiny_checkpoint

    from detkit.export import export_onnx

    ck = tiny_checkpoint(tmp_path / "all_queries.pt", class_map, overrides=["model.num_queries=189"])
    result = export_onnx(ck, tmp_path / "half.onnx", fp16=True, top_k=189 * len(class_map))
    assert result.metadata["precision"] == "fp16" and result.parity.precision == "fp16"
    assert result.parity.tolerance == {"scores": 2e-2, "boxes": 2e-2} and result.parity.passed, result.parity.summary()
    weights = onnx.load(str(result.model_path)).graph.initializer
    assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    inputs, outputs = _graph_io(result.model_path)
    assert inputs["images"] == ["N", 3, 96, 96] and outputs["scores"] == ["N", 945]


def test_failed_verification_leaves_no_model_file(ckpt, tmp_path, monkeypatch, cli):
    from detkit.export import verify

    monkeypatch.setitem(verify.TOLERANCES, "fp32", {"scores": -1.0, "boxes": -1.0})
    r = cli("export", "onnx", ckpt, "--out", tmp_path / "bad.onnx", "--static-batch")
    assert_clean_error(r, "disagrees with PyTorch")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "needle", "flag"),
    [
        (["--opset", "13"], "unsupported ONNX opset 13", "--opset"),
        (["--opset", "21"], "unsupported ONNX opset 21", "--opset"),
        (["--imgsz", "100", "640"], "multiples of 32", "--imgsz"),
        (["--imgsz", "0", "64"], "multiples of 32", "--imgsz"),
        (["--decoder-layers", "5"], "decoder_layers 5 exceeds the model's 2 decoder layers", "--decoder-layers"),
        (["--decoder-layers", "0"], "decoder_layers must be >= 1", "--decoder-layers"),
        (["--out", "model.pt"], "must end in .onnx", "--out"),
    ],
)
def test_bad_options_are_one_line_errors(cli, ckpt, tmp_path, args, needle, flag):
    """The library names the parameter; the CLI's hint adds the flag."""
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "m.onnx")]
    r = cli("export", "onnx", ckpt, *args)
    assert_clean_error(r, needle, f"on the command line: {flag}")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"opset": 13}, "unsupported ONNX opset 13"),
        ({"imgsz": (100, 640)}, "multiples of 32"),
        ({"decoder_layers": 0}, "decoder_layers must be >= 1"),
        ({"decoder_layers": 5}, "decoder_layers 5 exceeds"),
        ({"drop_below_threshold": True}, "drop_below_threshold needs a calibrator"),
    ],
)
def test_library_errors_name_parameters_not_flags(ckpt, tmp_path, options, needle):
    from detkit.export import ExportError, export_onnx

    with pytest.raises(ExportError) as err:
        export_onnx(ckpt, tmp_path / "m.onnx", **options)
    assert needle in err.value.message and "--" not in err.value.message and "--" not in (err.value.hint or "")
    assert set(err.value.params) & set(options)  # names the parameter the caller passed
    assert list(tmp_path.iterdir()) == []


def test_bad_model_and_calibrator(cli, ckpt, tmp_path, export_small):
    r = cli("export", "onnx", tmp_path / "missing.pt", "--out", tmp_path / "m.onnx")
    assert_clean_error(r, "missing.pt")
    r = cli("export", "onnx", export_small.model_path, "--out", tmp_path / "m.onnx")
    assert_clean_error(r, "already an ONNX export")
    bad = tmp_path / "cal.json"
    bad.write_text("{not json")
    r = cli("export", "onnx", ckpt, "--out", tmp_path / "m.onnx", "--calibrator", bad)
    assert_clean_error(r, "cal.json")
    assert not (tmp_path / "m.onnx").exists()


def test_calibration_check_tolerates_rounding_on_steep_isotonic_steps_but_not_a_wrong_map(class_map):
    from detkit.calibration.apply import calibrate_scores
    from detkit.calibration.calibrators import Calibrator
    from detkit.export.verify import calibration_error

    # an isotonic map with a jump of 0.5 over 1e-6 (what scikit-learn's step-like fits contain)
    params = [{"x": [0.0, 0.3, 0.300001, 1.0], "y": [0.0, 0.1, 0.6, 1.0]}] * len(class_map)
    cal = Calibrator("isotonic", True, "tp", 0.5, class_map, params)
    apply = lambda s, lab: calibrate_scores(cal, s, lab)  # noqa: E731
    labels = np.zeros(3, np.int64)
    raw = np.array([0.3000004, 0.1, 0.9], np.float32)
    graph_scores = apply(raw + np.float32(3e-7), labels).astype(np.float32)  # raw moved by float32 rounding
    assert np.abs(graph_scores - apply(raw, labels)).max() > 0.1  # a naive comparison would cry wolf
    assert calibration_error(apply, labels, raw, graph_scores) <= 1e-6
    wrong = graph_scores.copy()
    wrong[2] += 0.01  # a calibrator that is not the one in calibrator.json
    assert calibration_error(apply, labels, raw, wrong) >= 0.009


# -- tie-robust verification -------------------------------------------------------------------------------------


def _dets(labels, boxes, scores):
    from types import SimpleNamespace

    boxes, scores = np.asarray(boxes, np.float64), np.asarray(scores, np.float64)
    return SimpleNamespace(labels=np.asarray(labels), boxes=boxes, scores=scores)


def _random_dets(rng, n=40, classes=3, side=100.0):
    xy = rng.uniform(0, side / 2, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, side / 2, (n, 2))], 1)
    return rng.integers(0, classes, n), boxes, np.sort(rng.uniform(0.2, 0.9, n))[::-1]


def test_tied_scores_may_come_in_any_order_but_every_detection_needs_its_twin():
    from detkit.export.verify import compare_detections

    rng = np.random.default_rng(0)
    labels, boxes, scores = _random_dets(rng)
    scores[5:15] = 0.5  # ten exact ties ...
    scores[20:30] = 0.4 + rng.uniform(0, 5e-5, 10)  # ... and ten within the tolerance, with another label order
    order = np.arange(40)
    order[5:15], order[20:30] = rng.permutation(np.arange(5, 15)), rng.permutation(np.arange(20, 30))
    noise = rng.uniform(-3e-5, 3e-5, 40)
    test = _dets(labels[order], boxes[order] + 1e-3, scores[order] + noise[order])
    found = compare_detections([_dets(labels, boxes, scores)], [test], [(100, 100)], 1e-4)
    assert found["unpaired"] == 0 and found["topk_label_agreement"] == 1.0, found
    assert found["topk_order_agreement"] < 1.0  # the ranks did change ...
    # ... the values did not
    assert 2e-5 < found["max_abs_diff_scores"] <= 6e-5 and found["max_abs_diff_boxes"] == pytest.approx(1e-5)

    # boxes handed to other detections of the same scores: every score and label still has a partner, the boxes do not
    shuffled = _dets(labels, boxes[rng.permutation(40)], scores)
    found = compare_detections(
        [_dets(labels, boxes, scores)], [shuffled], [(100, 100)], 1e-4, image_names=["real image 0"]
    )
    assert found["unpaired"] > 30, found
    assert found["unpaired_example"].startswith("real image 0 (100×100): PyTorch detection label ")
    assert "has no twin (the nearest onnxruntime detection of that label is" in found["unpaired_example"]
    # a changed label or a moved score is no twin either
    relabelled = _dets(np.where(np.arange(40) == 2, labels + 1, labels), boxes, scores)
    assert compare_detections([_dets(labels, boxes, scores)], [relabelled], [(100, 100)], 1e-4)["unpaired"] == 2
    moved = _dets(labels, boxes, np.where(np.arange(40) == 2, scores[2] + 3e-4, scores))
    assert compare_detections([_dets(labels, boxes, scores)], [moved], [(100, 100)], 1e-4)["unpaired"] == 2


def test_top_k_cut_and_tied_encoder_queries_are_the_only_excuses():
    from detkit.export.verify import compare_detections

    rng = np.random.default_rng(1)
    labels, boxes, scores = _random_dets(rng)
    boxes[[8, 12]] = boxes[3]  # detections 3, 8 and 12 come from one decoder query (one box, three classes)
    ref = _dets(labels, boxes, scores)
    # the last kept detection swapped for a tied candidate just below the cut: allowed
    last = np.arange(40) == 39
    tail = _dets(labels, np.where(last[:, None], boxes[0], boxes), np.where(last, scores[39] - 5e-5, scores))
    assert compare_detections([ref], [tail], [(100, 100)], 1e-4)["unpaired"] == 0
    # that query replaced by another: only when the encoder had a tie at its cut
    q_boxes, q_scores = boxes.copy(), scores.copy()
    q_boxes[[3, 8, 12]] = [1.0, 2.0, 30.0, 40.0]
    q_scores[[3, 8, 12]] += 0.01
    swapped = _dets(labels, q_boxes, q_scores)
    assert compare_detections([ref], [swapped], [(100, 100)], 1e-4, swappable=[0])["unpaired"] == 6
    ok = compare_detections([ref], [swapped], [(100, 100)], 1e-4, swappable=[1])
    assert ok["unpaired"] == 0 and ok["query_swaps"] == 1
    # ... and never more queries than were tied
    q_boxes[[20, 25]] = [5.0, 5.0, 50.0, 50.0]
    two = _dets(labels, q_boxes, q_scores)
    assert compare_detections([ref], [two], [(100, 100)], 1e-4, swappable=[1])["unpaired"] > 0


def test_query_ties_count_tokens_tied_at_the_query_cut(ckpt):
    import torch

    from detkit.api import load_model
    from detkit.export.verify import predict_with_ties, query_ties

    # kept 0.9 0.5 0.5 | dropped 0.5 0.1: two kept and one dropped token tie at the cut; min(2, 1) queries may swap
    assert query_ties(torch.tensor([[0.5, 0.9, 0.1, 0.5, 0.5]]), 3, 1e-4) == [1]
    assert query_ties(torch.tensor([[0.5, 0.9, 0.1, 0.4, 0.2]]), 3, 1e-4) == [0]

    det = load_model(ckpt, device="cpu")
    det.batch_size = 1  # one traced forward per image: the counts of every batch are kept
    images = [np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)] * 2
    detections, ties = predict_with_ties(det, images, 1e-4)
    assert len(detections) == 2 and len(detections[0].scores) > 0
    assert len(ties) == 2 and ties[0] == ties[1] < 30  # one count per image; most logits of a random model differ
    with torch.no_grad():
        det.module.decoder.enc_score_head.weight.zero_()  # every token scores the same: all 30 queries could change
    _, ties = predict_with_ties(det, images, 1e-4)
    assert ties == [30, 30]
    det.module.train()
    predict_with_ties(det, images[:1], 1e-4)
    assert det.module.training  # the caller's module is left in the mode it was in


def test_untrained_and_reinitialised_head_models_export_and_verify(ckpt, class_map, tmp_path):
    """A random model's scores crowd into a narrow band (ties everywhere); its export must verify all the same."""
    import torch
    from export.tiny import tiny_checkpoint

    from detkit.export import export_onnx
    from detkit.models.checkpoint import load_checkpoint, save_checkpoint
    from detkit.models.rtdetr.convert_weights import is_class_head_key

    fresh = tiny_checkpoint(tmp_path / "fresh.pt", class_map, seed=7)
    trained, other = load_checkpoint(ckpt), load_checkpoint(fresh)
    state = {k: (other.weights[k] if is_class_head_key(k) else v) for k, v in trained.weights.items()}
    assert any(not torch.equal(state[k], trained.weights[k]) for k in state if is_class_head_key(k))
    reinit = save_checkpoint(tmp_path / "reinit.pt", model=state, class_map=class_map, recipe=trained.recipe)
    for source in (fresh, reinit):
        result = export_onnx(source, tmp_path / f"{source.stem}.onnx", imgsz=(128, 128))
        assert result.parity.passed and result.parity.unpaired == 0, result.parity.summary()
        assert result.parity.topk_label_agreement == 1.0 and result.parity.max_abs_diff_scores <= 1e-4


def test_a_corrupted_graph_or_shuffled_boxes_fail_with_a_clear_message(ckpt, export_small, tmp_path, monkeypatch, cli):
    from onnx import numpy_helper

    from detkit.api import load_model
    from detkit.export.runtime import OnnxDetector
    from detkit.export.verify import parity_error, verify_parity

    reference = load_model(ckpt, device="cpu")
    model = onnx.load(str(export_small.model_path))
    (bias,) = [i for i in model.graph.initializer if "enc_score_head.bias" in i.name]
    value = numpy_helper.to_array(bias).copy()
    value[0] += 0.5  # the encoder favours class 0: other queries reach the decoder
    bias.CopyFrom(numpy_helper.from_array(value, bias.name))
    onnx.save(model, str(tmp_path / "corrupt.onnx"))
    report = verify_parity(reference, OnnxDetector(tmp_path / "corrupt.onnx", metadata=export_small.metadata))
    assert not report.passed and report.unpaired > 0
    message = str(parity_error(report, tmp_path / "corrupt.onnx"))
    expected = "detection(s) without a twin, e.g. batch 1, random image 0 (480×640): PyTorch detection label "
    assert expected in message, message

    original = OnnxDetector.infer

    def shuffled(self, images, batch_size=None):
        out = original(self, images, batch_size)
        return [(lab, box[np.random.default_rng(0).permutation(len(box))], sc, raw) for lab, box, sc, raw in out]

    monkeypatch.setattr(OnnxDetector, "infer", shuffled)
    r = cli("export", "onnx", ckpt, "--out", tmp_path / "shuffled" / "m.onnx")
    assert_clean_error(r, "without a twin")
    assert not (tmp_path / "shuffled").exists() or list((tmp_path / "shuffled").iterdir()) == []


def test_drop_below_threshold_is_applied_in_the_graph_recorded_and_predict_keeps_only_the_operating_point(
    ckpt, calibrator_file, class_map, tmp_path
):
    from detkit.calibration.apply import calibrate_scores, keep_mask
    from detkit.calibration.io import load_calibrator
    from detkit.export import export_onnx
    from detkit.export.runtime import OnnxDetector
    from detkit.stages.predict import Selector

    with pytest.raises(Exception, match="drop_below_threshold needs a calibrator"):
        export_onnx(ckpt, tmp_path / "none.onnx", drop_below_threshold=True)
    result = export_onnx(ckpt, tmp_path / "drop.onnx", calibrator=calibrator_file, drop_below_threshold=True)
    assert result.parity.passed and result.metadata["operating_point"]["applied_in_graph"] is True
    det = OnnxDetector(result.model_path)
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (120, 150, 3), dtype=np.uint8) for _ in range(2)]
    cal = load_calibrator(calibrator_file)
    for labels, boxes, scores, raw in det.infer(images):
        calibrated = calibrate_scores(cal, raw, labels)
        keep = keep_mask(cal, raw, calibrated, labels)
        assert np.all(scores[~keep] == 0) and np.allclose(scores[keep], calibrated[keep], atol=1e-6)
        kept_labels, _, kept_scores = Selector(det)(labels, boxes, scores, raw)
        assert len(kept_labels) == int((keep & (scores > 0)).sum()) and np.all(kept_scores > 0)
