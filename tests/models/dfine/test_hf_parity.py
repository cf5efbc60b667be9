"""Equivalence with an implementation we did not write: Hugging Face ``DFineForObjectDetection`` (docs/dfine.md §11).

HF models are built offline with random weights, their zero/identity initialisations randomised (else every
distribution is uniform, every box equals B0 and FDR bugs stay invisible) and their convs He-initialised (else the
backbone output is nearly constant and hundreds of encoder scores tie). Every token's encoder class scores and
box logits are compared before the top-k; the 300 decoded queries are compared only for inputs whose top-k cut is
untied (a tie makes the selected set arbitrary), paired one to one because tied scores inside the top-k may come
in any order.
"""

from __future__ import annotations

import pytest
import torch

from detkit.models.dfine.config import DFineConfig
from detkit.models.dfine.convert_weights import (
    from_hf,
    load_dfine_weights,
    read_dfine_config,
)
from detkit.models.dfine.model import build_dfine

transformers = pytest.importorskip("transformers")

TOL = 1e-4
SIZES = {"n": [(288, 288), (224, 352)], "s": [(192, 192), (160, 224)]}


@pytest.fixture(scope="module", params=list(SIZES))
def pair(request, hf_config, randomise_dfine):
    from transformers import DFineForObjectDetection

    torch.manual_seed(0)
    hf = DFineForObjectDetection(hf_config(request.param)).eval()
    randomise_dfine(hf, convs=True)
    ours = build_dfine(DFineConfig(size=request.param), num_classes=80).eval()
    load_dfine_weights(ours, hf.state_dict(), source="hf.safetensors")
    return request.param, hf, ours


def _textured(size, seed):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    waves = torch.stack([torch.sin(9 * xs + 4 * ys), torch.cos(13 * ys - 3 * xs), torch.sin(7 * (xs + ys))])
    return (0.5 + 0.25 * waves + 0.25 * torch.rand(3, h, w, generator=g)).clamp(0, 1)[None]


def _run_both(hf, ours, x):
    captured = []
    hook = ours.decoder.enc_output.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        with torch.no_grad():
            ref = hf(pixel_values=x)
            out = ours(x)
    finally:
        hook.remove()
    all_memory = captured[0]  # the first call runs over every token
    with torch.no_grad():
        scores = ours.decoder.enc_score_head(all_memory)
        anchors, valid = ours.decoder.anchors(
            [(x.shape[2] // s, x.shape[3] // s) for s in ours.backbone.out_strides], x.device, x.dtype
        )
        box_logits = ours.decoder.enc_bbox_head(all_memory) + anchors
    return ref, out, scores, box_logits, valid[0, :, 0]


def _assert_same_queries(logits, boxes, ref_logits, ref_boxes, tol):
    from scipy.optimize import linear_sum_assignment

    ours = torch.cat([logits, boxes], -1).double()
    theirs = torch.cat([ref_logits, ref_boxes], -1).double()
    cost = (ours[:, None, :] - theirs[None, :, :]).abs().amax(-1)
    rows, cols = linear_sum_assignment(cost.numpy())
    worst = cost[rows, cols].max().item()
    assert worst <= tol, f"some query has no twin within {tol}: worst pair differs by {worst:.3g}"
    return worst


@pytest.mark.parametrize("which", [0, 1], ids=["square", "non-square"])
def test_matches_huggingface(pair, which):
    size_name, hf, ours = pair
    size = SIZES[size_name][which]
    compared = 0
    for seed in range(4):
        x = _textured(size, seed)
        ref, out, scores, box_logits, valid = _run_both(hf, ours, x)
        assert scores.shape == ref.enc_outputs_class.shape
        assert (scores - ref.enc_outputs_class).abs().max() <= TOL
        assert (box_logits[0, valid] - ref.enc_outputs_coord_logits[0, valid]).abs().max() <= TOL
        best = ref.enc_outputs_class[0].max(-1).values.sort(descending=True).values
        if best[299] - best[300] <= TOL:
            continue  # tied cut: the selected set is arbitrary
        assert ref.logits.std() > 0.1 and ref.pred_boxes.std() > 0.05  # not a degenerate comparison
        _assert_same_queries(out["logits"][0], out["boxes"][0], ref.logits[0], ref.pred_boxes[0], TOL)
        compared += 1
        break
    assert compared == 1, "no untied input among 4 for an end-to-end comparison"


def test_train_mode_corners_match_layer_by_layer(pair):
    """Without targets (no denoising), every layer's corner logits, boxes and B0 and the layer-0 pre-head outputs
    match HF's intermediates. Run in float64: train-mode batch norm over one image amplifies float32 rounding to a
    few 1e-4 in the logits, which would hide a real difference."""
    size_name, hf, ours = pair
    x = _textured(SIZES[size_name][0], 0).double()
    hf.double().train(), ours.double().train()
    try:
        with torch.no_grad():
            ref = hf(pixel_values=x)
            out = ours(x)
    finally:
        hf.float().eval(), ours.float().eval()
    best = ref.enc_outputs_class[0].max(-1).values.sort(descending=True).values
    assert best[299] - best[300] > TOL
    layers = [*out["aux_outputs"], out]
    ours_corners = torch.stack([o["corners"] for o in layers], 1)  # [1, L, Q, 4(R+1)]
    ours_boxes = torch.stack([o["boxes"] for o in layers], 1)
    assert ours_corners.shape == ref.intermediate_predicted_corners.shape

    # one row per query: every layer's corners and boxes, the pre-head box and logits, B0 (paired one to one, as
    # tied scores inside the top-k may be ordered differently)
    def rows(corners, boxes, pre_boxes, pre_logits, initial):
        return torch.cat(
            [
                corners[0].transpose(0, 1).flatten(1),
                boxes[0].transpose(0, 1).flatten(1),
                pre_boxes[0],
                pre_logits[0],
                initial[0],
            ],
            dim=-1,
        )

    mine = rows(ours_corners, ours_boxes, out["pre_outputs"]["boxes"], out["pre_outputs"]["logits"], out["ref_points"])
    theirs = rows(
        ref.intermediate_predicted_corners,
        ref.intermediate_reference_points[:, 1:],
        ref.intermediate_reference_points[:, 0],
        ref.intermediate_logits[:, 0],
        ref.initial_reference_points[:, 0],
    )
    _assert_same_queries(mine, mine[:, :0], theirs, theirs[:, :0], 1e-5)
    assert ours_corners.std() > 0.05  # the corner heads are not degenerate


@pytest.mark.parametrize("size", ["n", "s", "m", "l", "x"])
def test_hf_key_map_and_config_for_every_size(size, hf_config):
    """Every HF tensor maps onto exactly one of ours with the same shape, and the architecture read from HF's shapes
    is the preset (meta device: no memory, no compute)."""
    from transformers import DFineForObjectDetection

    with torch.device("meta"):
        hf = DFineForObjectDetection(hf_config(size))
        ours = build_dfine(DFineConfig(size=size), num_classes=80)
    converted, unmapped = from_hf(hf.state_dict())
    assert unmapped == []
    mapped = {k: tuple(v.shape) for k, v in converted.items()}
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert mapped == expected
    assert read_dfine_config(hf.state_dict()) == DFineConfig(size=size)


def test_hub_file_names_and_bare_model_load_too(hf_config):
    """Files on the Hub keep the names before HF 5's load-time renames (``encoder.encoder``, ``out_proj``,
    ``fc1``/``fc2``), and a ``DFineModel`` state dict has no ``model.`` prefix and no top-level head copies."""
    import re

    from transformers import DFineForObjectDetection

    with torch.device("meta"):
        hf = DFineForObjectDetection(hf_config("n"))
    current, _ = from_hf(hf.state_dict())
    hub = {}
    for k, v in hf.state_dict().items():
        k = k.replace("encoder.aifi.", "encoder.encoder.").replace("o_proj", "out_proj")
        hub[re.sub(r"layers\.(\d+)\.mlp\.layers\.([01])\.", lambda m: f"layers.{m[1]}.fc{int(m[2]) + 1}.", k)] = v
    assert any(".fc1." in k for k in hub) and any("encoder.encoder.0" in k for k in hub)
    converted, unmapped = from_hf(hub)
    assert unmapped == [] and converted.keys() == current.keys()
    bare = {k.removeprefix("model."): v for k, v in hf.state_dict().items() if k.startswith("model.")}
    converted, unmapped = from_hf(bare)
    assert unmapped == [] and converted.keys() == current.keys()
    assert read_dfine_config(bare) == DFineConfig(size="n")
