"""Official RT-DETR v1/v2 ``.pth`` layouts: written by our own ``to_official`` and loaded back exactly."""

from __future__ import annotations

import pytest
import torch

from detkit.errors import DetkitError
from detkit.models.checkpoint import read_weights
from detkit.models.rtdetr.builder import build_model
from detkit.models.rtdetr.convert_weights import detect_layout, load_into, to_official


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_official_layout_round_trip_is_exact(tiny_model, make_tiny_config, version, tmp_path):
    official = to_official(tiny_model.state_dict(), version=version)
    if version == "v1":
        assert "encoder.input_proj.0.0.weight" in official and "decoder.enc_output.0.weight" in official
    else:
        assert "encoder.input_proj.0.conv.weight" in official and "decoder.enc_output.proj.weight" in official
        assert official["decoder.anchors"].shape == (1, 8400, 4) and official["decoder.valid_mask"].sum() == 8084
        assert official["decoder.decoder.layers.0.cross_attn.num_points_scale"].shape == (12,)
    assert detect_layout(official) == f"official-{version}"
    # as released: {'ema': {'module': state_dict}} (preferred over 'model')
    path = tmp_path / "rtdetr.pth"
    torch.save({"ema": {"module": official}, "model": {"junk": torch.zeros(1)}}, path)

    fresh = build_model(make_tiny_config(), num_classes=5).eval()
    conv = load_into(fresh, read_weights(path)[0])
    if version == "v2":
        assert "decoder.anchors" in conv.ignored  # derived buffers are recomputed, and reported as skipped
    x = torch.rand(1, 3, 160, 128)
    with torch.no_grad():
        a, b = tiny_model(x), fresh(x)
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["boxes"], b["boxes"])


def test_unknown_and_missing_keys_are_named(tiny_model, make_tiny_config):
    sd = to_official(tiny_model.state_dict(), "v1")
    sd["decoder.extra_head.weight"] = torch.zeros(1)
    del sd["decoder.dec_bbox_head.0.layers.0.bias"]
    fresh = build_model(make_tiny_config(), num_classes=5)
    with pytest.raises(DetkitError) as e:
        load_into(fresh, sd, source="w.pth")
    msg = str(e.value)
    assert "unexpected decoder.extra_head.weight" in msg and "missing decoder.dec_bbox_head.0.layers.0.bias" in msg


def test_other_depth_is_refused_with_shape_or_key_report(tiny_model, make_tiny_config):
    deeper = build_model(make_tiny_config(decoder_layers=4), num_classes=5)
    with pytest.raises(DetkitError, match="missing decoder.dec_bbox_head.3"):
        load_into(deeper, tiny_model.state_dict())
    wider = build_model(make_tiny_config(decoder_ffn_dim=256), num_classes=5)
    with pytest.raises(DetkitError, match="shape mismatch for decoder.decoder.layers.0.linear1.weight"):
        load_into(wider, tiny_model.state_dict())


def test_other_class_count_needs_reinit_head(tiny_model, make_tiny_config):
    three = build_model(make_tiny_config(), num_classes=3)
    with pytest.raises(DetkitError, match="trained for 5 classes but the model has 3") as e:
        load_into(three, tiny_model.state_dict())
    assert "reinit" in e.value.hint
    before = three.decoder.enc_score_head.weight.clone()
    conv = load_into(three, tiny_model.state_dict(), reinit_head=True)
    assert torch.equal(three.decoder.enc_score_head.weight, before)  # head keeps its fresh init
    assert torch.equal(three.backbone.conv1.conv1_1.conv.weight, tiny_model.backbone.conv1.conv1_1.conv.weight)
    assert "decoder.denoising_class_embed.weight" in conv.ignored
