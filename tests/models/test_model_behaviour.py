"""Forward contract: eval/train outputs, decoder truncation, RepVGG fusion, input types and sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detkit.config.recipe import resolve_recipe
from detkit.errors import DetkitError
from detkit.models.rtdetr.builder import build_model


def _train_with_frozen_stats(model: nn.Module) -> nn.Module:
    """Train mode (all decoder layers returned) but BatchNorm using running statistics."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    return model


def test_decoder_truncation_equals_the_layer_head_of_the_full_model(randomise):
    torch.manual_seed(0)
    model = build_model(resolve_recipe("recipe:rtdetr-r50").model, num_classes=80)
    randomise(model)
    x = torch.rand(1, 3, 128, 160)  # 420 tokens: just above the 300 queries
    with torch.no_grad():
        full = _train_with_frozen_stats(model)(x)  # no targets: no denoising, every layer's head
        model.eval()
        last = model(x)
        model.set_eval_layers(3)
        three = model(x)
    assert len(full["aux_outputs"]) == 5
    torch.testing.assert_close(three["logits"], full["aux_outputs"][2]["logits"], rtol=0, atol=1e-5)
    torch.testing.assert_close(three["boxes"], full["aux_outputs"][2]["boxes"], rtol=0, atol=1e-5)
    torch.testing.assert_close(last["logits"], full["logits"], rtol=0, atol=1e-5)
    assert not torch.allclose(three["logits"], last["logits"])
    with pytest.raises(ValueError, match="1..6"):
        model.set_eval_layers(7)


def test_repvgg_fusion_matches_and_stays_out_of_checkpoints(tiny_model):
    x = torch.rand(1, 3, 128, 96)
    keys = set(tiny_model.state_dict())
    with torch.no_grad():
        before = tiny_model(x)
        tiny_model.fuse()
        after = tiny_model(x)
    assert set(tiny_model.state_dict()) == keys
    torch.testing.assert_close(after["logits"], before["logits"], rtol=0, atol=1e-4)
    torch.testing.assert_close(after["boxes"], before["boxes"], rtol=0, atol=1e-5)


def test_uint8_input_equals_float_and_any_multiple_of_32(tiny_model):
    img = torch.randint(0, 256, (1, 3, 96, 160), dtype=torch.uint8)
    with torch.no_grad():
        a = tiny_model(img)
        b = tiny_model(img.float() / 255)
    assert torch.equal(a["logits"], b["logits"]) and a["logits"].shape == (1, 30, 5)
    assert a["boxes"].min() >= 0 and a["boxes"].max() <= 1
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny_model(torch.rand(1, 3, 100, 96))
    with pytest.raises(DetkitError, match="fewer than the 30 queries"):
        tiny_model(torch.rand(1, 3, 32, 32))


def _targets():
    return [
        {
            "labels": torch.tensor([1, 4, 0]),
            "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.2, 0.3, 0.1, 0.1], [0.7, 0.6, 0.4, 0.2]]),
        },
        {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)},  # background image
    ]


def test_train_outputs_structure_with_a_background_image(tiny_model):
    model = tiny_model.train()
    out = model(torch.rand(2, 3, 128, 96), _targets())
    q, k = 30, 5
    assert out["logits"].shape == (2, q, k) and out["boxes"].shape == (2, q, 4)
    assert len(out["aux_outputs"]) == 2 and all(a["logits"].shape == (2, q, k) for a in out["aux_outputs"])
    assert out["enc_outputs"][0]["logits"].shape == (2, q, k) and out["enc_outputs"][0]["boxes"].shape == (2, q, 4)
    meta = out["dn_meta"]
    # 20 denoising queries, at most 3 objects per image → 6 groups of 3 positives + 3 negatives
    assert meta["num_group"] == 6 and meta["num_split"] == [36, q]
    assert len(out["dn_outputs"]) == 3 and out["dn_outputs"][0]["boxes"].shape == (2, 36, 4)
    assert meta["positive_idx"][0].tolist() == [g * 6 + j for g in range(6) for j in range(3)]
    assert meta["positive_idx"][1].numel() == 0
    loss = sum(
        o["logits"].sum() + o["boxes"].sum()
        for o in [out, *out["aux_outputs"], *out["enc_outputs"], *out["dn_outputs"]]
    )
    loss.backward()
    assert model.decoder.enc_score_head.weight.grad is not None
    assert model.decoder.denoising_class_embed.weight.grad[5].abs().sum() == 0  # padding row never learns


def test_batch_without_objects_uses_the_dummy_group(tiny_model):
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}] * 2
    out = tiny_model.train()(torch.rand(2, 3, 64, 64), empty)
    assert out["dn_meta"]["num_group"] == 1 and out["dn_meta"]["num_split"] == [2, 30]
    assert all(p.numel() == 0 for p in out["dn_meta"]["positive_idx"])
    assert out["dn_outputs"][0]["logits"].shape == (2, 2, 5)


def test_no_denoising_when_disabled(make_tiny_config):
    model = build_model(make_tiny_config(num_denoising=0), num_classes=5).train()
    out = model(torch.rand(1, 3, 64, 64), _targets()[:1])
    assert out["dn_outputs"] is None and out["dn_meta"] is None
    assert "decoder.denoising_class_embed.weight" not in model.state_dict()


def test_fused_repvgg_block_trains_through_its_branches():
    from detkit.models.rtdetr.encoder import RepVggBlock

    torch.manual_seed(0)
    block = RepVggBlock(8, 8)
    x = torch.rand(2, 8, 10, 12)
    block.train()
    block(x)  # update BN statistics once so eval-mode BN is not the identity
    block.eval()
    unfused = block(x)
    block.fuse()
    torch.testing.assert_close(block(x), unfused, rtol=0, atol=1e-5)
    block.train()
    out = block(x)
    out.sum().backward()
    assert block.conv1.conv.weight.grad is not None and block.is_fused
