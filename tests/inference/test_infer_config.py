"""Bare foreign weights need no recipe: the architecture read from the tensor shapes rebuilds the exact model."""

from __future__ import annotations

import pytest
import torch
from inference.tiny_models import IMGSZ, build_tiny, randomise, tiny_config

from detkit.inference import TorchDetector, open_detector
from detkit.models.rtdetr.convert_weights import to_official
from detkit.models.rtdetr.infer_config import class_count, infer_imgsz, infer_model_config


@pytest.fixture(scope="module", params=[18, 50], ids=["r18", "r50"])
def writer(request):
    """The model that writes the weights: tiny R18-like (basic blocks) and R50-like (bottlenecks), 80 classes."""
    cfg = tiny_config(request.param, num_denoising=100 if request.param == 18 else 0)
    return cfg, build_tiny(cfg, 80, seed=request.param)


def _same_outputs(ours: torch.nn.Module, ref, hw=(IMGSZ, 192)) -> None:
    x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert a["logits"].shape == (1, 300, 80) and a["logits"].std() > 0.1
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["boxes"], b["boxes"])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_official_layout_rebuilds_the_writer(writer, version, tmp_path):
    cfg, model = writer
    official = to_official(model.state_dict(), version, imgsz=(IMGSZ, IMGSZ))
    assert infer_model_config(official) == cfg and class_count(official) == 80
    assert infer_imgsz(official) == (IMGSZ if version == "v2" else None)  # only v2 stores its anchors
    path = tmp_path / f"rtdetr{version}_r{cfg.depth}vd.pth"
    torch.save({"ema": {"module": official}, "model": {"junk": torch.zeros(1)}}, path)
    det = open_detector(path, device="cpu")
    assert isinstance(det, TorchDetector) and det.source == path
    assert det.class_map.names[:3] == ("person", "bicycle", "car") and det.class_map.category_ids[-1] == 90
    assert det.imgsz == ((IMGSZ, IMGSZ) if version == "v2" else (640, 640))
    assert det.recipe.model == cfg
    _same_outputs(det.module, model)


def test_points_come_from_the_v2_buffer_and_heads_from_the_rest(tmp_path):
    """An official v2 file stores the points per level, so heads × points splits without the 8-head default."""
    cfg = tiny_config(18, num_heads=4, num_points=2, encoder_dim=32, hidden_dim=32)
    sd = to_official(build_tiny(cfg, 3).state_dict(), "v2", imgsz=(IMGSZ, IMGSZ), num_points=2)
    got = infer_model_config(sd)
    assert (got.num_heads, got.num_points, got.encoder_dim, got.hidden_dim) == (4, 2, 32, 32)


# -- Hugging Face RTDetrForObjectDetection (built offline by transformers, a dev-extra dependency) -------------------
HF_BACKBONES = {
    18: (
        {
            "model_type": "rt_detr_resnet",
            "depths": [2, 2, 2, 2],
            "layer_type": "basic",
            "hidden_sizes": [64, 128, 256, 512],
            "embedding_size": 64,
            "out_features": ["stage2", "stage3", "stage4"],
        },
        [128, 256, 512],
    ),
    50: (
        {
            "model_type": "rt_detr_resnet",
            "depths": [3, 4, 6, 3],
            "layer_type": "bottleneck",
            "hidden_sizes": [256, 512, 1024, 2048],
            "embedding_size": 64,
            "out_features": ["stage2", "stage3", "stage4"],
        },
        [512, 1024, 2048],
    ),
}


@pytest.mark.parametrize("depth", [18, 50])
def test_hugging_face_safetensors_rebuilds_the_writer(depth, tmp_path):
    pytest.importorskip("transformers")
    from safetensors.torch import save_file
    from transformers import RTDetrConfig, RTDetrForObjectDetection

    backbone, in_channels = HF_BACKBONES[depth]
    torch.manual_seed(depth)
    hf = RTDetrForObjectDetection(
        RTDetrConfig(
            num_labels=80,
            backbone_config=backbone,
            encoder_in_channels=in_channels,
            d_model=64,
            encoder_hidden_dim=64,
            encoder_ffn_dim=128,
            decoder_ffn_dim=96,
            hidden_expansion=0.5,
            decoder_layers=2,
            decoder_in_channels=[64, 64, 64],
            freeze_backbone_batch_norms=False,
        )
    )
    randomise(hf, depth)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
    det = open_detector(path, device="cpu")
    cfg = det.recipe.model
    assert (cfg.depth, cfg.encoder_dim, cfg.hidden_dim, cfg.decoder_layers, cfg.expansion, cfg.depth_mult) == (
        depth,
        64,
        64,
        2,
        0.5,
        1.0,
    )
    assert (cfg.encoder_ffn_dim, cfg.decoder_ffn_dim, cfg.num_heads, cfg.num_points) == (128, 96, 8, 4)
    assert det.class_map.names[0] == "person" and len(det.class_map) == 80
    x = torch.rand(1, 3, IMGSZ, 192, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, out = hf(pixel_values=x), det.module(x)
    assert ref.logits.std() > 0.1
    assert (out["logits"] - ref.logits).abs().max() <= 1e-4
    assert (out["boxes"] - ref.pred_boxes).abs().max() <= 1e-4
