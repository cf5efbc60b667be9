"""RT-DETRv2 and DEIM decoder options of the rtdetr family (docs/rt-detr.md §8): per-level sampling points, discrete
sampling, SiLU, the ``as_reg`` query position head; their weights (official v2 and Hugging Face
``RTDetrV2ForObjectDetection``), their export, and parity with Hugging Face's implementation.

Everything runs on tiny models (R18 backbone, width 64, 2 decoder layers, 30 queries) at 128×128 and 96×160.
"""

from __future__ import annotations

import types

import pytest
import torch
from pydantic import ValidationError

from detkit.config.recipe import resolve_recipe
from detkit.errors import DetkitError
from detkit.models.checkpoint import read_weights
from detkit.models.rtdetr.builder import build_model
from detkit.models.rtdetr.config import ModelConfig
from detkit.models.rtdetr.convert_weights import (
    from_hf,
    load_into,
    points_from_scale,
    to_detkit,
    to_official,
)
from detkit.models.rtdetr.infer_config import infer_model_config

TINY = {
    "depth": 18,
    "freeze_stem": False,
    "frozen_bn": False,
    "encoder_dim": 64,
    "encoder_ffn_dim": 128,
    "expansion": 0.5,
    "hidden_dim": 64,
    "num_heads": 4,
    "num_queries": 30,
    "decoder_layers": 2,
    "decoder_ffn_dim": 128,
    "num_denoising": 20,
}
DEIM = {"activation": "silu", "query_pos_method": "as_reg"}
ALL_OPTIONS = dict(num_points=[2, 6, 4], cross_attn_method="discrete", **DEIM)


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


def build(cfg: ModelConfig, seed: int = 0):
    from detkit_testing import randomise_norm_stats

    torch.manual_seed(seed)
    model = build_model(cfg, num_classes=5)
    randomise_norm_stats(model)
    with torch.no_grad():  # fresh offsets do not depend on the query; make them
        for layer in model.decoder.decoder.layers:
            layer.cross_attn.sampling_offsets.weight.normal_(0, 0.05)
    return model.eval()


def textured(size: tuple[int, int], seed: int) -> torch.Tensor:
    """Stripes of random frequency and orientation per channel plus noise, in [0, 1]: features vary everywhere."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    freq, phase = torch.rand(3, 2, generator=g) * 12 + 2, torch.rand(3, generator=g) * 6.3
    stripes = torch.stack([torch.sin(fx * xs + fy * ys + p) for (fx, fy), p in zip(freq, phase)])
    return (0.35 + 0.3 * stripes + 0.3 * torch.rand(3, h, w, generator=g)).clamp(0, 1)[None]


# -- each option changes the module as documented ------------------------------------------------------------------
def test_points_per_level_set_the_sampling_shapes_and_the_trace_pads_to_the_widest_level():
    heads = TINY["num_heads"]
    default, per_level = build(tiny()), build(tiny(num_points=[1, 2, 3]))
    attn = per_level.decoder.decoder.layers[0].cross_attn
    assert default.decoder.decoder.layers[0].cross_attn.sampling_offsets.weight.shape == (heads * 12 * 2, 64)
    assert attn.sampling_offsets.weight.shape == (heads * 6 * 2, 64)
    assert attn.attention_weights.weight.shape == (heads * 6, 64)
    assert attn.points_scale.tolist() == pytest.approx([1, 1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3])
    # initial offsets: sample k of a level sits k unit steps along its head's ray
    bias = attn.sampling_offsets.bias.reshape(heads, 6, 2)
    assert torch.allclose(bias[0, :, 0], torch.tensor([1.0, 1, 2, 1, 2, 3]))
    assert "points_scale" not in "".join(per_level.state_dict())  # derived, not saved
    with per_level.record_intermediates() as trace, torch.no_grad():
        per_level(textured((128, 128), 0))
    loc, wts = trace.sampling_locations[0], trace.attention_weights[0]
    assert loc.shape == (1, 30, heads, 3, 3, 2) and wts.shape == (1, 30, heads, 3, 3)
    assert torch.all(wts[..., 0, 1:] == 0) and torch.all(wts[..., 1, 2:] == 0)  # padding carries no weight
    assert torch.allclose(wts.sum((-1, -2)), torch.ones(1, 30, heads))


def test_same_total_points_spread_otherwise_give_other_detections():
    """[2, 6, 4] and 4 per level have identical tensors; only the meaning of the offsets differs."""
    a, b = build(tiny()), build(tiny(num_points=[2, 6, 4]))
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    b.load_state_dict(a.state_dict())
    x = textured((128, 128), 1)
    with torch.no_grad():
        assert not torch.allclose(a(x)["boxes"], b(x)["boxes"], atol=1e-4)


def test_discrete_sampling_reads_nearest_cells_and_freezes_the_offsets():
    model = build(tiny(cross_attn_method="discrete")).train()
    attn = model.decoder.decoder.layers[0].cross_attn
    assert not attn.sampling_offsets.weight.requires_grad and not attn.sampling_offsets.bias.requires_grad
    assert attn.attention_weights.weight.requires_grad
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]])}]
    out = model(torch.rand(1, 3, 64, 64), targets)
    (out["logits"].sum() + out["boxes"].sum()).backward()
    assert attn.sampling_offsets.weight.grad is None and attn.attention_weights.weight.grad is not None


def test_discrete_core_picks_the_cell_each_location_falls_in_clamped_into_the_map():
    from detkit.models.deformable_attention import deformable_attention_core

    h, w = 2, 3
    value = torch.arange(h * w, dtype=torch.float32).reshape(1, h * w, 1, 1)  # cell (y, x) holds y·w + x
    # x·w + 0.5 and y·h + 0.5 floored: (0.1, 0.1) → (0, 0); (0.9, 0.2) → x 3 → clamped 2, y 0; (-0.5, 1.5) → (0, 1)
    locs = torch.tensor([[0.1, 0.1], [0.9, 0.2], [-0.5, 1.5], [0.4, 0.6]]).reshape(1, 4, 1, 1, 2)
    out = deformable_attention_core(value, [(h, w)], locs, torch.ones(1, 4, 1, 1), [1], method="discrete")
    assert out.flatten().tolist() == [0.0, 2.0, 3.0, 4.0]


def test_silu_and_as_reg_change_activations_and_the_query_position_head():
    relu, deim = build(tiny()), build(tiny(**DEIM))
    assert [tuple(lin.weight.shape) for lin in relu.decoder.query_pos_head.layers] == [(128, 4), (64, 128)]
    assert [tuple(lin.weight.shape) for lin in deim.decoder.query_pos_head.layers] == [(64, 4), (64, 64), (64, 64)]
    acts = [
        deim.decoder.decoder.layers[0].activation,
        deim.decoder.query_pos_head.act,
        deim.decoder.enc_bbox_head.act,
        deim.decoder.dec_bbox_head[1].act,
    ]
    assert all(isinstance(a, torch.nn.SiLU) for a in acts)
    assert isinstance(relu.decoder.dec_bbox_head[0].act, torch.nn.ReLU)
    silu_only = build(tiny(activation="silu"))
    assert {k: v.shape for k, v in silu_only.state_dict().items()} == {k: v.shape for k, v in relu.state_dict().items()}
    silu_only.load_state_dict(relu.state_dict())
    x = textured((128, 128), 2)
    with torch.no_grad():
        assert not torch.allclose(relu(x)["logits"], silu_only(x)["logits"], atol=1e-4)


# -- recipe values --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_points", [4, 4]),
        ("num_points", 0),
        ("num_points", [4, 0, 4]),
        ("num_points", "four"),
        ("num_points", True),
        ("num_points", [4.5, 4, 4]),
        ("cross_attn_method", "nearest"),
        ("activation", "gelu"),
        ("query_pos_method", "reg"),
    ],
)
def test_bad_values_give_one_error_naming_the_field(field, value):
    with pytest.raises(ValidationError) as e:
        tiny(**{field: value})
    assert len(e.value.errors()) == 1 and e.value.errors()[0]["loc"] == (field,)


def test_recipe_overrides_take_the_options_and_name_a_bad_one():
    recipe = resolve_recipe(
        "recipe:rtdetr-r18",
        overrides=[
            "model.num_points=[3,6,3]",
            "model.cross_attn_method=discrete",
            "model.activation=silu",
            "model.query_pos_method=as_reg",
        ],
    )
    assert recipe.model.points_per_level() == [3, 6, 3] and recipe.model.cross_attn_method == "discrete"
    assert resolve_recipe("recipe:rtdetr-r18").model.points_per_level() == [4, 4, 4]
    with pytest.raises(DetkitError, match=r"model\.num_points: must be a positive integer or a list of 3"):
        resolve_recipe("recipe:rtdetr-r18", overrides=["model.num_points=[3,6]"])


# -- official v2 files ----------------------------------------------------------------------------------------------
def test_official_v2_round_trip_with_every_option(tmp_path):
    cfg = tiny(**ALL_OPTIONS)
    model = build(cfg)
    official = to_official(model.state_dict(), "v2", imgsz=(128, 128), num_points=cfg.num_points)
    scale = official["decoder.decoder.layers.1.cross_attn.num_points_scale"]
    assert points_from_scale(scale) == [2, 6, 4]
    path = tmp_path / "rtdetrv2.pth"
    torch.save({"ema": {"module": official}}, path)
    sd = read_weights(path)[0]

    inferred = infer_model_config(sd)  # what the shapes and buffers show
    assert (inferred.num_points, inferred.num_heads, inferred.query_pos_method, inferred.activation) == (
        [2, 6, 4],
        4,
        "as_reg",
        "silu",
    )
    assert inferred.cross_attn_method == "default"  # invisible in the weights: the recipe must say so
    fresh = build_model(inferred.model_copy(update={"cross_attn_method": "discrete", "num_queries": 30}), 5).eval()
    conv = load_into(fresh, sd, source="rtdetrv2.pth")
    assert conv.layout == "official-v2" and conv.points == [2, 6, 4]
    x = textured((96, 160), 3)
    with torch.no_grad():
        a, b = model(x), fresh(x)
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["boxes"], b["boxes"])


def test_weights_with_other_points_per_level_are_refused_by_name():
    sd = to_official(build(tiny(num_points=[3, 6, 3])).state_dict(), "v2", num_points=[3, 6, 3])
    with pytest.raises(
        DetkitError,
        match=r"w\.pth: weights sample \[3, 6, 3\] points per level but the model "
        r"\[4, 4, 4\]",
    ) as e:
        load_into(build_model(tiny(), 5), sd, source="w.pth")
    assert "model.num_points=[3, 6, 3]" in e.value.hint
    sd["decoder.decoder.layers.1.cross_attn.num_points_scale"] = torch.full((12,), 0.25)
    with pytest.raises(DetkitError, match="points-scale buffers do not describe one count"):
        to_detkit(sd)


def test_points_scale_decoding():
    assert points_from_scale(torch.tensor([1 / 3] * 3 + [1 / 6] * 6 + [1 / 3] * 3)) == [3, 6, 3]
    assert points_from_scale(torch.full((12,), 0.25)) == [4, 4, 4]
    assert points_from_scale(torch.tensor([0.5, 0.25])) is None and points_from_scale(torch.tensor([0.0])) is None


# -- Hugging Face RTDetrV2ForObjectDetection ------------------------------------------------------------------------
def hf_config(**overrides):
    from transformers import RTDetrV2Config

    return RTDetrV2Config(
        num_labels=5,
        backbone_config={
            "model_type": "rt_detr_resnet",
            "depths": [2, 2, 2, 2],
            "layer_type": "basic",
            "hidden_sizes": [64, 128, 256, 512],
            "embedding_size": 64,
            "out_features": ["stage2", "stage3", "stage4"],
        },
        freeze_backbone_batch_norms=False,
        encoder_in_channels=[128, 256, 512],
        feat_strides=[8, 16, 32],
        encode_proj_layers=[2],
        encoder_hidden_dim=64,
        encoder_ffn_dim=128,
        encoder_attention_heads=4,
        hidden_expansion=0.5,
        d_model=64,
        decoder_in_channels=[64, 64, 64],
        decoder_ffn_dim=128,
        decoder_attention_heads=4,
        decoder_layers=2,
        num_queries=30,
        num_denoising=20,
        **overrides,
    )


def _silu_head_forward(self, x):
    """HF's prediction MLP with SiLU between its linears (HF hard-wires ReLU there; DEIM uses SiLU)."""
    for i, layer in enumerate(self.layers):
        x = layer(x)
        if i < len(self.layers) - 1:
            x = torch.nn.functional.silu(x)
    return x


def hf_model(case: str, seed: int):
    """A random HF RTDetrV2 model for one of the cases, zero inits randomised, with the matching detkit config.

    ``points``: HF builds the same count on every level; its attention reads the per-level counts from
    ``n_points_list`` and the scale buffer, so those are set to [2, 6, 4] (12 samples, as 3 × 4).
    ``deim``: SiLU in the FFN (HF option) and in every prediction MLP, and a 3-layer 4→d→d→d query position head
    (HF has neither option, so the heads' forward and the query position module are replaced).
    """
    from detkit_testing import randomise_norm_stats
    from transformers import RTDetrV2ForObjectDetection
    from transformers.models.rt_detr_v2 import modeling_rt_detr_v2 as hf_mod

    hf_kw = {"discrete": {"decoder_method": "discrete"}, "deim": {"decoder_activation_function": "silu"}}
    torch.manual_seed(seed)
    hf = RTDetrV2ForObjectDetection(hf_config(**hf_kw.get(case, {}))).eval()
    ours_kw = {"points": {"num_points": [2, 6, 4]}, "discrete": {"cross_attn_method": "discrete"}, "deim": DEIM}
    if case == "points":
        for layer in hf.model.decoder.layers:
            attn = layer.encoder_attn
            attn.n_points_list = [2, 6, 4]
            attn.n_points_scale.copy_(torch.tensor([1 / 2] * 2 + [1 / 6] * 6 + [1 / 4] * 4))
    if case == "deim":
        hf.model.decoder.query_pos_head = hf_mod.RTDetrV2MLPPredictionHead(4, 64, 64, num_layers=3)
        for m in hf.modules():
            if isinstance(m, hf_mod.RTDetrV2MLPPredictionHead):
                m.forward = types.MethodType(_silu_head_forward, m)
    randomise_norm_stats(hf, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in hf.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # random affine values, so no feature region is constant
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, torch.nn.Conv2d):  # HF's 0.01-std encoder convs leave whole levels constant
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        for layer in hf.model.decoder.layers:  # offsets that depend on the query
            layer.encoder_attn.sampling_offsets.weight.copy_(
                torch.randn(layer.encoder_attn.sampling_offsets.weight.shape, generator=g) * 0.05
            )
        hf.model.enc_output[0].bias.zero_()  # border tokens (memory zeroed) score the prior, below real tokens
        hf.model.enc_output[1].bias.zero_()
    return hf, tiny(**ours_kw.get(case, {}))


def untied(hf, size, tries=6):
    """A textured input whose top-30 query selection has a clear gap at its cut, with HF's outputs (or None)."""
    for seed in range(tries):
        x = textured(size, seed)
        with torch.no_grad():
            ref = hf(pixel_values=x)
        top = ref.enc_outputs_class[0].max(-1).values.sort(descending=True).values
        if top[29] - top[30] > 1e-4:
            return x, ref
    return None


def assert_same_queries(logits, boxes, ref_logits, ref_boxes, tol) -> float:
    """Every query has a twin in the reference (Hungarian pairing: tied queries may come in any order)."""
    from scipy.optimize import linear_sum_assignment

    ours = torch.cat([logits, boxes], -1).double()
    theirs = torch.cat([ref_logits, ref_boxes], -1).double()
    cost = (ours[:, None, :] - theirs[None, :, :]).abs().amax(-1)
    rows, cols = linear_sum_assignment(cost.numpy())
    worst = cost[rows, cols].max().item()
    assert worst <= tol, f"some query has no twin within {tol}: worst pair differs by {worst:.3g}"
    return worst


@pytest.mark.parametrize("size", [(128, 128), (96, 160)], ids=["128", "96x160"])
@pytest.mark.parametrize("case", ["v2", "points", "discrete", "deim"])
def test_matches_huggingface_rtdetrv2(case, size):
    pytest.importorskip("transformers")
    for seed in range(4):
        hf, cfg = hf_model(case, seed)
        found = untied(hf, size)
        if found is not None:
            break
    assert found is not None, "no untied query selection found"
    x, ref = found
    ours = build_model(cfg, num_classes=5).eval()
    conv = load_into(ours, hf.state_dict(), source="hf")
    assert conv.layout == "hf" and conv.points == ([2, 6, 4] if case == "points" else [4, 4, 4])
    inferred = infer_model_config(hf.state_dict())  # bare HF v2 weights need no recipe (discrete aside)
    assert (inferred.points_per_level(), inferred.num_heads, inferred.hidden_dim) == (cfg.points_per_level(), 4, 64)
    assert (inferred.query_pos_method, inferred.activation) == (cfg.query_pos_method, cfg.activation)
    scores = []
    hook = ours.decoder.enc_score_head.register_forward_hook(lambda m, i, o: scores.append(o))
    try:
        with torch.no_grad():
            out = ours(x)
    finally:
        hook.remove()
    assert scores[0].shape == ref.enc_outputs_class.shape  # every token, before the top-k
    assert (scores[0] - ref.enc_outputs_class).abs().max() <= 1e-4
    assert ref.logits.std() > 0.1  # not a degenerate comparison
    assert_same_queries(out["logits"][0], out["boxes"][0], ref.logits[0], ref.pred_boxes[0], tol=1e-4)


def test_hf_v2_key_map_covers_r50():
    """Every tensor of HF's default (R50) RTDetrV2 maps onto ours with the same shape (meta device: no compute)."""
    pytest.importorskip("transformers")
    from transformers import RTDetrV2Config, RTDetrV2ForObjectDetection

    with torch.device("meta"):
        hf = RTDetrV2ForObjectDetection(RTDetrV2Config(num_labels=80))
        ours = build_model(resolve_recipe("recipe:rtdetr-r50").model, num_classes=80)
    conv = from_hf(hf.state_dict())
    assert conv.unmapped == [] and conv.points is None  # meta buffers hold no values to decode
    mapped = {k: tuple(v.shape) for k, v in conv.state_dict.items()}
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert mapped == expected


# -- export -------------------------------------------------------------------------------------------------------
def test_discrete_sampling_exports_to_onnx_without_grid_sample(tmp_path):
    onnx = pytest.importorskip("onnx")
    from export.tiny import tiny_checkpoint

    from detkit.data.synth import synth_class_map
    from detkit.export import export_onnx

    ckpt = tiny_checkpoint(
        tmp_path / "tiny.pt",
        synth_class_map(),
        imgsz=64,
        overrides=[
            "model.cross_attn_method=discrete",
            "model.num_points=[2,4,2]",
            "model.activation=silu",
            "model.query_pos_method=as_reg",
        ],
    )
    result = export_onnx(ckpt, tmp_path / "model.onnx")  # verified against PyTorch with onnxruntime
    ops = {node.op_type for node in onnx.load(str(result.model_path)).graph.node}
    assert "GridSample" not in ops and "GatherElements" in ops
    assert result.parity is not None and result.parity.passed  # onnxruntime against PyTorch
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(result.model_path), providers=["CPUExecutionProvider"])
    image = (textured((64, 64), 4) * 255).to(torch.uint8).numpy()
    labels, boxes, scores = session.run(
        ["labels", "boxes", "scores"], {"images": image, "orig_sizes": torch.tensor([[640, 480]]).numpy()}
    )
    assert boxes.shape[:2] == scores.shape == labels.shape and scores.shape[1] > 0
    assert bool((boxes[..., 2:] >= boxes[..., :2]).all()) and float(scores.max()) <= 1.0  # xyxy pixels, scores
