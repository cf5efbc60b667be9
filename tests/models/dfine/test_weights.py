"""D-FINE weights: the official layout round trip, architecture from shapes, and every bad-input path."""

from __future__ import annotations

import pytest
import torch
from detkit_testing import assert_same_state

from detkit.errors import DetkitError
from detkit.models.dfine.config import DFineConfig
from detkit.models.dfine.convert_weights import (
    load_dfine_weights,
    read_dfine_config,
    to_official,
)
from detkit.models.dfine.model import build_dfine


def _image(h=128, w=96, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_official_layout_round_trip_reproduces_outputs_exactly(tiny_n, make_dfine_config):
    """A state dict written in the official naming (with its derived buffers and EMA wrapper) loads into a fresh
    model and gives bit-identical outputs."""
    official = to_official(tiny_n.state_dict(), num_points=[6, 6])
    assert "decoder.decoder.layers.0.cross_attn.num_points_scale" in official
    assert "decoder.decoder.up" in official and "decoder.decoder.reg_scale" in official
    assert "backbone.stem.stem1.lab.scale" in official
    assert "encoder.fpn_blocks.0.cv2.0.bottlenecks.1.conv1.conv.weight" in official
    torch.manual_seed(1)
    fresh = build_dfine(make_dfine_config(), num_classes=3)
    load_dfine_weights(fresh, {"ema": {"module": official}, "model": {}}, source="dfine_n_coco.pth")
    fresh.eval()
    assert_same_state(dict(fresh.state_dict()), dict(tiny_n.state_dict()))
    x = _image()
    with torch.no_grad():
        a, b = tiny_n(x), fresh(x)
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["boxes"], b["boxes"])


@pytest.mark.parametrize("size", ["n", "s", "m", "l", "x"])
def test_config_read_from_official_shapes(size):
    with torch.device("meta"):
        model = build_dfine(DFineConfig(size=size), num_classes=80)
    official = to_official(model.state_dict(), num_points=DFineConfig(size=size).num_points)
    assert read_dfine_config(official) == DFineConfig(size=size)


def test_config_read_keeps_non_preset_values(tiny_n):
    cfg = read_dfine_config(to_official(tiny_n.state_dict(), num_points=[6, 6]))
    assert cfg == DFineConfig(size="n")  # tiny_n only changes queries/denoising counts, which shapes cannot show
    with torch.device("meta"):
        model = build_dfine(DFineConfig(size="s", decoder_layers=5, num_points=[4, 4, 4], num_denoising=0), 7)
    sd = to_official(model.state_dict(), num_points=[4, 4, 4])
    sd["decoder.reg_scale"] = torch.tensor([6.0])
    cfg = read_dfine_config(sd)
    assert (cfg.decoder_layers, cfg.num_points, cfg.num_denoising, cfg.reg_scale) == (5, [4, 4, 4], 0, 6.0)


def test_rtdetr_weights_are_not_dfine():
    from detkit.models.rtdetr.builder import build_model
    from detkit.models.rtdetr.config import ModelConfig

    with torch.device("meta"):
        rtdetr = build_model(ModelConfig(depth=18, frozen_bn=False, freeze_stem=False), num_classes=80).state_dict()
    assert read_dfine_config(rtdetr) is None
    with torch.device("meta"):
        model = build_dfine(DFineConfig(size="n"), num_classes=80)
    with pytest.raises(DetkitError, match=r"^rtdetr_r18\.pth: not a D-FINE state dict"):
        load_dfine_weights(model, rtdetr, source="rtdetr_r18.pth")


def test_missing_and_unexpected_keys_give_one_error_naming_the_file(tiny_n, make_dfine_config):
    sd = to_official(tiny_n.state_dict(), num_points=[6, 6])
    del sd["decoder.pre_bbox_head.layers.0.weight"]
    sd["decoder.extra.weight"] = torch.zeros(1)
    model = build_dfine(make_dfine_config(), num_classes=3)
    with pytest.raises(DetkitError) as err:
        load_dfine_weights(model, sd, source="run/best.pth")
    msg = str(err.value)
    assert msg.startswith("run/best.pth: weights do not fit this D-FINE architecture")
    assert "missing decoder.pre_bbox_head.layers.0.weight" in msg and "unexpected decoder.extra.weight" in msg


def test_wrong_shapes_name_the_file_and_the_key(tiny_n, make_dfine_config):
    model = build_dfine(make_dfine_config(decoder_ffn_dim=256), num_classes=3)
    with pytest.raises(DetkitError, match=r"^n\.pth: shape mismatch for decoder\.decoder\.layers\.0\.linear1\.weight"):
        load_dfine_weights(model, tiny_n.state_dict(), source="n.pth")


def test_other_class_count_needs_reinit_head(tiny_n, make_dfine_config):
    model = build_dfine(make_dfine_config(), num_classes=5)
    with pytest.raises(DetkitError, match=r"^n\.pth: weights were trained for 3 classes but the model has 5"):
        load_dfine_weights(model, tiny_n.state_dict(), source="n.pth")
    fresh_head = model.decoder.enc_score_head.weight.detach().clone()
    load_dfine_weights(model, tiny_n.state_dict(), reinit_head=True, source="n.pth")
    assert torch.equal(model.decoder.enc_score_head.weight, fresh_head)
    assert torch.equal(model.decoder.pre_bbox_head.layers[0].weight, tiny_n.decoder.pre_bbox_head.layers[0].weight)


def test_incomplete_hugging_face_file_is_refused(tiny_n):
    sd = {
        "model.backbone.model.embedder.stem1.convolution.weight": torch.zeros(16, 3, 3, 3),
        "model.decoder.lqe_layers.0.reg_conf.layers.0.weight": torch.zeros(64, 20),
        "model.decoder.layers.0.self_attn.q_proj.weight": torch.zeros(128, 128),
        "model.something_new.weight": torch.zeros(1),
    }
    with pytest.raises(DetkitError, match=r"^hf\.safetensors: 2 Hugging Face key\(s\) have no place"):
        load_dfine_weights(tiny_n, sd, source="hf.safetensors")
