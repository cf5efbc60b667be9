"""Parameter counts equal the official models' (docs/rt-detr.md §7), built from the shipped recipes."""

from __future__ import annotations

import pytest
import torch

from detkit.config.recipe import resolve_recipe
from detkit.models.rtdetr.builder import build_model

OFFICIAL = {"rtdetr-r18": 20_184_464, "rtdetr-r34": 31_441_668, "rtdetr-r50": 42_891_372, "rtdetr-r101": 76_556_268}


@pytest.mark.parametrize("name", OFFICIAL)
def test_parameter_count_matches_official(name):
    recipe = resolve_recipe(f"recipe:{name}")
    with torch.device("meta"):
        model = build_model(recipe.model, num_classes=80)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL[name]


def test_frozen_bn_and_stem_only_where_the_spec_says():
    from detkit.models.layers import FrozenBatchNorm2d

    with torch.device("meta"):
        r18 = build_model(resolve_recipe("recipe:rtdetr-r18").model, 80)
        r50 = build_model(resolve_recipe("recipe:rtdetr-r50").model, 80)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in r18.modules())
    assert all(p.requires_grad for p in r18.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in r50.backbone.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in r50.encoder.modules())
    assert not any(p.requires_grad for p in r50.backbone.conv1.parameters())
    assert all(p.requires_grad for p in r50.backbone.res_layers.parameters())


def test_official_key_names_and_shapes():
    with torch.device("meta"):
        sd = build_model(resolve_recipe("recipe:rtdetr-r18").model, 80).state_dict()
    expected = {
        "backbone.conv1.conv1_1.conv.weight": (32, 3, 3, 3),
        "backbone.res_layers.0.blocks.0.short.conv.weight": (64, 64, 1, 1),
        "backbone.res_layers.1.blocks.0.short.conv.conv.weight": (128, 64, 1, 1),
        "encoder.encoder.0.layers.0.self_attn.in_proj_weight": (768, 256),
        "encoder.fpn_blocks.0.conv3.conv.weight": (256, 128, 1, 1),
        "encoder.pan_blocks.1.bottlenecks.2.conv2.conv.weight": (128, 128, 1, 1),
        "decoder.decoder.layers.2.cross_attn.sampling_offsets.weight": (192, 256),
        "decoder.decoder.layers.2.cross_attn.attention_weights.weight": (96, 256),
        "decoder.denoising_class_embed.weight": (81, 256),
        "decoder.query_pos_head.layers.0.weight": (512, 4),
        "decoder.enc_bbox_head.layers.2.weight": (4, 256),
        "decoder.dec_score_head.2.weight": (80, 256),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "decoder.dec_score_head.3.weight" not in sd


def test_gflops_match_the_official_count_plus_attention_products_minus_the_skipped_box_head():
    """Official R18 @640: 61.0 GFLOPs without the attention-score products, which our count includes (~0.44),
    and with the encoder box head over all 8,400 tokens, where ours runs it over the 300 selected ones."""
    from detkit.models.profile import profile_config

    prof = profile_config(resolve_recipe("recipe:rtdetr-r18").model, 80, (640, 640))
    skipped_box_head = (8400 - 300) * 2 * (256 * 256 + 256 * 256 + 256 * 4) / 1e9  # 2.14
    assert 61.0 < prof.gflops + skipped_box_head < 61.6
    assert prof.params == OFFICIAL["rtdetr-r18"] and sum(prof.by_part.values()) == prof.params
