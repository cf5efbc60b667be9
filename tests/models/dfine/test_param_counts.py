"""Parameter counts equal the official D-FINE models' (docs/dfine.md §10), training and deployment form."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from detkit.models.dfine.config import DFineConfig
from detkit.models.dfine.model import build_dfine
from detkit.models.dfine.profile import deployed_parameter_count, parameter_counts

# official models built from their COCO configs, 80 classes: (as trained, after deploy())
OFFICIAL = {
    "n": (3_782_693, 3_753_799),
    "s": (10_321_877, 10_237_491),
    "m": (19_590_064, 19_248_189),
    "l": (31_244_152, 30_724_195),
    "x": (62_621_560, 61_601_635),
}


@pytest.mark.parametrize("size", OFFICIAL)
def test_parameter_counts_match_official(size):
    training, deployed = parameter_counts(DFineConfig(size=size), num_classes=80)
    assert (training, deployed) == OFFICIAL[size]  # exact (the issue asks for 0.5 %)


def test_deploy_count_follows_the_answering_layer():
    with torch.device("meta"):
        model = build_dfine(DFineConfig(size="n"), 80)
    full = deployed_parameter_count(model)
    model.set_eval_layers(1)  # layers 2 and 3 (with their heads) are dropped; layer 1's class head and LQE answer
    dropped_layers = sum(p.numel() for i in (1, 2) for p in model.decoder.decoder.layers[i].parameters())
    dropped_boxes = sum(p.numel() for i in (1, 2) for p in model.decoder.dec_bbox_head[i].parameters())
    assert deployed_parameter_count(model) == full - dropped_layers - dropped_boxes


def test_frozen_bn_and_stem_only_for_l_and_x():
    from detkit.models.layers import FrozenBatchNorm2d

    with torch.device("meta"):
        s = build_dfine(DFineConfig(size="s"), 80)
        x = build_dfine(DFineConfig(size="x"), 80)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in s.modules())
    assert all(
        p.requires_grad
        for n, p in s.named_parameters()
        if not n.startswith("decoder.up") and not n.startswith("decoder.reg_scale")
    )
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in x.backbone.modules())
    assert not any(p.requires_grad for p in x.backbone.stem.parameters())
    assert all(p.requires_grad for p in x.backbone.stages.parameters())
    assert not x.decoder.up.requires_grad and not x.decoder.reg_scale.requires_grad


def test_presets_fill_fields_and_explicit_fields_override():
    x = DFineConfig(size="x")
    assert (x.backbone, x.encoder_dim, x.reg_scale, x.num_points, x.strides) == ("B5", 384, 8.0, [3, 6, 3], [8, 16, 32])
    n = DFineConfig(size="n", decoder_layers=4, activation="silu")
    assert (n.backbone, n.hidden_dim, n.decoder_layers, n.activation, n.strides) == ("B0", 128, 4, "silu", [16, 32])
    assert DFineConfig(**n.model_dump()) == n  # a dumped config (recipe.yaml) reads back the same


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"size": "n", "num_points": [3, 6, 3]}, "one count per feature level"),
        ({"size": "s", "eval_idx": 3}, "eval_idx"),
        ({"size": "s", "return_stages": [3, 2]}, "return_stages"),
        ({"size": "s", "hidden_dim": 100}, "divisible by num_heads"),
        ({"size": "s", "reg_max": 31}, "reg_max must be even"),
        ({"size": "s", "depth": 18}, "Extra inputs"),
    ],
)
def test_bad_configs_name_the_field(bad, needle):
    with pytest.raises(ValidationError, match=needle):
        DFineConfig(**bad)


# official README figures at 640 (rounded to whole GFLOPs; ours also counts the attention-score products)
README_GFLOPS = {"n": 7, "s": 25, "m": 57, "l": 91, "x": 202}


@pytest.mark.parametrize("size", README_GFLOPS)
def test_deployed_gflops_match_the_readme_figures(size):
    from detkit.models.dfine.profile import deployed_gflops

    gflops = deployed_gflops(DFineConfig(size=size))
    assert README_GFLOPS[size] <= gflops < README_GFLOPS[size] * 1.05


def test_registry_helpers():
    from detkit.models.dfine import describe, feature_tokens

    assert feature_tokens(DFineConfig(size="n"), 640) == 40 * 40 + 20 * 20  # strides 16 and 32 only
    assert feature_tokens(DFineConfig(size="s"), 640) == 8400
    assert describe(DFineConfig(size="x"))["backbone"] == "HGNetv2-B5"
