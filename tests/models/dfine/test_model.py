"""D-FINE model behaviour: the train-mode output contract, truncation, deployment, tracing and input handling."""

from __future__ import annotations

import pytest
import torch

from detkit.models.dfine.model import build_dfine
from detkit.models.family import DetectionModel

TARGETS = [
    {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.2], [0.25, 0.7, 0.1, 0.2]])},
    {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)},
]
LAYER_KEYS = {"logits", "boxes", "corners", "ref_points", "teacher_corners", "teacher_logits"}


def _images(b=2, h=128, w=96, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def train_out(tiny_n):
    tiny_n.train()
    try:
        torch.manual_seed(0)
        out = tiny_n(_images(), TARGETS)
    finally:
        tiny_n.eval()
    return out


def test_is_a_detection_model(tiny_n):
    assert isinstance(tiny_n, DetectionModel)
    assert (tiny_n.num_classes, tiny_n.num_queries, tiny_n.eval_layers, tiny_n.decoder_layers) == (3, 20, 3, 3)


def test_train_outputs_follow_the_contract(train_out):
    out, q, k, bins = train_out, 20, 3, 4 * 33
    assert set(out) == {
        "logits",
        "boxes",
        "corners",
        "ref_points",
        "up",
        "reg_scale",
        "aux_outputs",
        "pre_outputs",
        "enc_outputs",
        "dn_outputs",
        "dn_pre_outputs",
        "dn_meta",
    }
    assert out["logits"].shape == (2, q, k) and out["boxes"].shape == (2, q, 4)
    assert out["corners"].shape == (2, q, bins) and out["ref_points"].shape == (2, q, 4)
    assert not out["ref_points"].requires_grad  # B0 is detached
    assert float(out["up"]) == 0.5 and float(out["reg_scale"]) == 4.0
    assert len(out["aux_outputs"]) == 2 and all(set(a) == LAYER_KEYS for a in out["aux_outputs"])
    for aux in out["aux_outputs"]:
        assert aux["corners"].shape == (2, q, bins) and aux["teacher_corners"] is out["corners"]
        assert aux["teacher_logits"] is out["logits"] and torch.equal(aux["ref_points"], out["ref_points"])
    assert set(out["pre_outputs"]) == {"logits", "boxes"} and out["pre_outputs"]["boxes"].shape == (2, q, 4)
    assert torch.equal(out["pre_outputs"]["boxes"].detach(), out["ref_points"])  # pre boxes are B0
    assert len(out["enc_outputs"]) == 1 and out["enc_outputs"][0]["logits"].shape == (2, q, k)
    meta = out["dn_meta"]
    n_dn = meta["num_split"][0]
    assert meta["num_split"] == [n_dn, q] and meta["num_group"] == 10 // 2 and n_dn == 2 * 2 * meta["num_group"]
    assert len(out["dn_outputs"]) == 3 and all(set(d) == LAYER_KEYS for d in out["dn_outputs"])
    assert all(d["logits"].shape == (2, n_dn, k) and d["corners"].shape == (2, n_dn, bins) for d in out["dn_outputs"])
    assert out["dn_outputs"][0]["teacher_corners"] is out["dn_outputs"][-1]["corners"]
    assert out["dn_pre_outputs"]["boxes"].shape == (2, n_dn, 4)
    for t in (out["boxes"], out["pre_outputs"]["boxes"], out["enc_outputs"][0]["boxes"]):
        assert ((t >= 0) & (t <= 1)).all()


def test_corner_residuals_reach_earlier_heads(tiny_n, make_dfine_config):
    """The last layer's corners are C_L = head_L(...) + C_{L-1}, not detached: its loss trains every box head."""
    model = build_dfine(make_dfine_config(num_denoising=0), num_classes=3).train()
    out = model(_images(b=1, h=64, w=64), None)
    assert out["dn_outputs"] is None and out["dn_meta"] is None and out["dn_pre_outputs"] is None
    out["corners"].sum().backward()
    assert all(h.layers[0].weight.grad is not None for h in model.decoder.dec_bbox_head)
    assert model.decoder.pre_bbox_head.layers[0].weight.grad is None  # B0 is detached


def test_eval_uses_only_the_needed_layers_and_matches_train_mode_layers(tiny_n):
    """With norms in eval mode and no denoising, layer k's train-mode outputs equal the eval outputs of a model
    truncated to k layers (its own class head and LQE answer)."""
    x = _images(b=1)
    tiny_n.train()
    for m in tiny_n.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    try:
        with torch.no_grad():
            train = tiny_n(x, None)
    finally:
        tiny_n.eval()
    layers = [*train["aux_outputs"], train]
    calls = []
    hooks = [layer.register_forward_hook(lambda m, i, o: calls.append(1)) for layer in tiny_n.decoder.decoder.layers]
    try:
        for k in (1, 2, 3):
            tiny_n.set_eval_layers(k)
            calls.clear()
            with torch.no_grad():
                out = tiny_n(x)
            assert len(calls) == k
            assert (out["logits"] - layers[k - 1]["logits"]).abs().max() < 1e-5
            assert (out["boxes"] - layers[k - 1]["boxes"]).abs().max() < 1e-5
    finally:
        for h in hooks:
            h.remove()
        tiny_n.set_eval_layers(3)
    with pytest.raises(ValueError, match="1..3"):
        tiny_n.set_eval_layers(4)


def test_deploy_keeps_outputs_and_checkpoint_form(tiny_n, make_dfine_config):
    model = build_dfine(make_dfine_config(), num_classes=3)
    model.load_state_dict(tiny_n.state_dict())
    model.eval()
    x = _images()
    with torch.no_grad():
        before = model(x)
        keys = set(model.state_dict())
        model.deploy()
        after = model(x)
    assert (after["logits"] - before["logits"]).abs().max() <= 1e-5
    assert (after["boxes"] - before["boxes"]).abs().max() <= 1e-5
    assert set(model.state_dict()) == keys  # folded kernels are not persistent
    assert model.decoder.project is not None and model.decoder.project.shape == (33,)


def test_record_intermediates(tiny_n):
    x = _images(b=1)
    with torch.no_grad():
        plain = tiny_n(x)
        with tiny_n.record_intermediates() as trace:
            traced = tiny_n(x)
    assert torch.equal(plain["logits"], traced["logits"])
    assert trace.spatial_shapes == [(8, 6), (4, 3)] and trace.query_index.shape == (1, 20)
    assert len(trace.reference_boxes) == len(trace.sampling_locations) == len(trace.attention_weights) == 3
    assert trace.sampling_locations[0].shape == (1, 20, 8, 2, 6, 2)
    assert torch.allclose(trace.attention_weights[2].sum((-1, -2)), torch.ones(1, 20, 8))
    assert tiny_n.decoder.trace is None  # off again after the block
    with torch.no_grad():
        tiny_n(x)
    assert len(trace.reference_boxes) == 3


def test_trace_pads_levels_with_fewer_points(make_dfine_config):
    model = build_dfine(make_dfine_config(size="s", num_points=[2, 4, 3]), num_classes=3).eval()
    with torch.no_grad(), model.record_intermediates() as trace:
        model(_images(b=1, h=128, w=128))
    loc, w = trace.sampling_locations[0], trace.attention_weights[0]
    assert loc.shape == (1, 20, 8, 3, 4, 2) and w.shape == (1, 20, 8, 3, 4)
    assert (w[..., 0, 2:] == 0).all() and (w[..., 2, 3] == 0).all()
    assert torch.allclose(w.sum((-1, -2)), torch.ones(1, 20, 8))
    ref = trace.reference_boxes[0][:, :, None, :2]
    assert torch.equal(loc[..., 0, 3, :], ref.expand_as(loc[..., 0, 3, :]))


def test_uint8_input_and_size_checks(tiny_n):
    x = (torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)
    with torch.no_grad():
        a = tiny_n(x)
        b = tiny_n(x.float() / 255.0)
    assert torch.equal(a["logits"], b["logits"])
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny_n(torch.rand(1, 3, 100, 96))
    from detkit.errors import DetkitError

    with pytest.raises(DetkitError, match="fewer than the 20 queries"):
        tiny_n(torch.rand(1, 3, 32, 64))


def test_silu_switch_reaches_every_decoder_mlp(make_dfine_config):
    model = build_dfine(make_dfine_config(activation="silu"), num_classes=3)
    dec = model.decoder
    mlps = [
        dec.query_pos_head,
        dec.enc_bbox_head,
        dec.pre_bbox_head,
        *dec.dec_bbox_head,
        *(lqe.reg_conf for lqe in dec.decoder.lqe_layers),
    ]
    assert all(isinstance(m.act, torch.nn.SiLU) for m in mlps)
    assert all(isinstance(layer.act, torch.nn.SiLU) for layer in dec.decoder.layers)
