"""The whole robustness run with a real (tiny, randomly initialised) RT-DETR behind ``detkit.api.Detector``."""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")


def test_run_robustness_with_a_real_detector(synth, tmp_path):
    from detkit.api import Detector
    from detkit.evaluation.robustness import robustness_markdown, run_robustness
    from detkit.models.rtdetr.builder import build_model
    from detkit.models.rtdetr.config import ModelConfig

    shutil.copytree(synth.root / "coco_o" / "sketch", tmp_path / "ood_coco" / "sketch")  # one domain keeps it fast
    torch.manual_seed(0)
    cfg = ModelConfig(
        depth=18,
        freeze_stem=False,
        frozen_bn=False,
        encoder_dim=64,
        encoder_ffn_dim=128,
        hidden_dim=64,
        num_heads=4,
        num_queries=20,
        decoder_layers=1,
        decoder_ffn_dim=128,
        num_denoising=0,
    )
    detector = Detector(build_model(cfg, len(synth.class_map)).eval(), synth.class_map, imgsz=64, device="cpu")
    result = run_robustness(
        detector,
        0.02,
        synth,
        coco_o_root=tmp_path,
        corruptions="fog",
        severities="1",
        cache_dir=tmp_path / "cache",
        out_dir=tmp_path / "eval",
        split="test",
        batch_size=6,
        workers=1,
    )
    assert list(result["coco_c"]["AP"]) == ["fog"] and 0.0 <= result["coco_c"]["mPC"] <= 100.0
    assert list(result["coco_o"]["domains"]) == ["sketch"] and len(result["coco_o"]["missing_coco_o_domains"]) == 5
    assert result["coco_o"]["effective_robustness"] == pytest.approx(result["coco_o"]["mAP_O"] - 0.45 * 2.0)
    assert result["coco_c"]["rPC"] == pytest.approx(result["coco_c"]["mPC"] / 2.0 * 100.0)
    json.dumps(result, allow_nan=False)
    assert "### COCO-O" in robustness_markdown(result)
