"""The union ("GO") matching and the whole D-FINE criterion on fake outputs of the model contract."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from detkit.models.dfine.criterion import DFineCriterion, build_criterion, union_matching
from detkit.models.dfine.loss_config import DFineLossConfig
from detkit.models.matcher import HungarianMatcher

from .conftest import K, L


def _idx(*pairs: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    q, t = [p[0] for p in pairs], [p[1] for p in pairs]
    return torch.tensor(q, dtype=torch.int64), torch.tensor(t, dtype=torch.int64)


def test_union_keeps_the_most_frequent_target_per_query():
    # image 0 (3 targets), four matchings; image 1 has no target
    m = [
        [_idx((0, 0), (2, 1), (5, 2)), _idx()],
        [_idx((0, 1), (2, 1), (4, 2)), _idx()],
        [_idx((0, 1), (3, 1), (5, 0)), _idx()],
        [_idx((0, 1), (2, 0), (4, 2)), _idx()],
    ]
    (q, t), (q1, t1) = union_matching(m, [3, 0])
    # query 0: target 1 three times vs 0 once; 2: 1 twice; 3: 1 once; 4: 2 twice; 5: tie 2 vs 0 -> first seen (2)
    assert q.tolist() == [0, 2, 3, 4, 5] and t.tolist() == [1, 1, 1, 2, 2]
    assert q1.numel() == t1.numel() == 0


def test_union_allows_a_target_several_queries_but_a_query_once():
    m = [[_idx((1, 0), (2, 1))], [_idx((3, 0), (2, 1))], [_idx((1, 0), (4, 1))]]
    ((q, t),) = union_matching(m, [2])
    assert q.tolist() == [1, 2, 3, 4] and t.tolist() == [0, 1, 0, 1]
    assert len(set(q.tolist())) == len(q)


def _check_terms(losses: dict[str, torch.Tensor], denoising: bool, cls: str = "loss_vfl") -> None:
    names = set(losses)
    for suffix in ["", *[f"_aux_{i}" for i in range(L - 1)]]:
        assert {f"{cls}{suffix}", f"loss_bbox{suffix}", f"loss_giou{suffix}", f"loss_fgl{suffix}"} <= names
    assert "loss_ddf" not in names  # the final layer is the teacher
    assert {f"loss_ddf_aux_{i}" for i in range(L - 1)} <= names
    for suffix in ("_pre", "_enc_0"):
        assert {f"{cls}{suffix}", f"loss_bbox{suffix}", f"loss_giou{suffix}"} <= names
        assert f"loss_fgl{suffix}" not in names and f"loss_ddf{suffix}" not in names
    dn = {n for n in names if "_dn_" in n}
    if denoising:
        for i in range(L):
            assert {
                f"{cls}_dn_{i}",
                f"loss_bbox_dn_{i}",
                f"loss_giou_dn_{i}",
                f"loss_fgl_dn_{i}",
                f"loss_ddf_dn_{i}",
            } <= names
        assert {f"{cls}_dn_pre", "loss_bbox_dn_pre", "loss_giou_dn_pre"} <= names
        assert losses[f"loss_ddf_dn_{L - 1}"].item() == 0.0  # the last DN layer is its own teacher
    else:
        assert not dn
    for name, value in losses.items():
        assert value.dim() == 0 and value.dtype == torch.float32, name
        assert torch.isfinite(value), name


@pytest.mark.parametrize("denoising", [False, True])
def test_criterion_terms_finite_and_gradients_flow(fake, denoising):
    make_outputs, make_targets = fake
    sizes = [2, 0, 3]  # the middle image has no object
    outputs = make_outputs(sizes, denoising=denoising)
    losses = DFineCriterion(K)(outputs, make_targets(sizes))
    _check_terms(losses, denoising)
    assert losses["loss_bbox"].item() > 0 and losses["loss_fgl"].item() > 0 and losses["loss_ddf_aux_0"].item() > 0
    torch.stack(list(losses.values())).sum().backward()
    sets = [outputs, *outputs["aux_outputs"]] + (outputs["dn_outputs"] if denoising else [])
    for out in sets:
        for key in ("logits", "boxes", "corners"):
            assert out[key].grad is not None and out[key].grad.abs().sum() > 0, key
    assert outputs["pre_outputs"]["logits"].grad.abs().sum() > 0
    assert outputs["enc_outputs"][0]["boxes"].grad.abs().sum() > 0


def test_criterion_batch_without_any_object(fake):
    make_outputs, make_targets = fake
    sizes = [0, 0]
    losses = DFineCriterion(K)(make_outputs(sizes, denoising=True), make_targets(sizes))
    _check_terms(losses, denoising=True)
    assert losses["loss_vfl"].item() > 0  # negatives are still pushed down
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_fgl"].item() == 0.0
    assert losses["loss_bbox_dn_0"].item() == 0.0


def test_mal_replaces_vfl_and_weights_apply(fake):
    make_outputs, make_targets = fake
    sizes = [3, 1]
    outputs, targets = make_outputs(sizes, seed=1), make_targets(sizes, seed=1)
    base = DFineCriterion(K)(outputs, targets)
    mal = DFineCriterion(K, DFineLossConfig(classification="mal", mal=2.0, fgl=0.3))(outputs, targets)
    _check_terms(mal, denoising=False, cls="loss_mal")
    assert not any(k.startswith("loss_vfl") for k in mal)
    torch.testing.assert_close(mal["loss_fgl_aux_1"], 2 * base["loss_fgl_aux_1"])
    torch.testing.assert_close(mal["loss_giou_pre"], base["loss_giou_pre"])


def test_union_equals_own_matching_when_all_sets_agree(fake):
    """With every layer's predictions identical, the union is each set's own matching: both modes agree."""
    make_outputs, make_targets = fake
    sizes = [2, 3]
    outputs = make_outputs(sizes, seed=2)
    for aux in outputs["aux_outputs"]:
        aux.update({k: outputs[k] for k in ("logits", "boxes", "corners")})
    outputs["pre_outputs"] = {"logits": outputs["logits"], "boxes": outputs["boxes"]}
    outputs["enc_outputs"] = [dict(outputs["pre_outputs"])]
    targets = make_targets(sizes, seed=2)
    union = DFineCriterion(K)(outputs, targets)
    own = DFineCriterion(K, DFineLossConfig(union_set=False))(outputs, targets)
    assert union.keys() == own.keys()
    for name in union:
        torch.testing.assert_close(union[name], own[name], msg=name)


def test_box_terms_use_the_union_and_its_size(fake):
    make_outputs, make_targets = fake
    sizes = [3, 2]
    outputs, targets = make_outputs(sizes, seed=3), make_targets(sizes, seed=3)
    crit = DFineCriterion(K)
    losses = crit(outputs, targets)
    sets = [outputs, *outputs["aux_outputs"], outputs["pre_outputs"], *outputs["enc_outputs"]]
    union = union_matching(HungarianMatcher().match_sets(sets, targets), sizes)
    n_go = sum(len(q) for q, _ in union)
    l1 = sum((outputs["boxes"][i, q] - targets[i]["boxes"][t]).abs().sum() for i, (q, t) in enumerate(union))
    assert losses["loss_bbox"].item() == pytest.approx(5.0 * l1.item() / n_go, rel=1e-5)
    assert n_go >= sum(sizes)


def test_nan_terms_become_zero(fake):
    make_outputs, make_targets = fake
    outputs = make_outputs([1], denoising=True)  # denoising sets are not matched: NaN reaches the loss
    outputs["dn_pre_outputs"]["logits"] = torch.full_like(outputs["dn_pre_outputs"]["logits"], float("nan"))
    losses = DFineCriterion(K)(outputs, make_targets([1]))
    assert losses["loss_vfl_dn_pre"].item() == 0.0 and losses["loss_vfl_dn_0"].item() > 0


def test_fp32_under_autocast(fake):
    make_outputs, make_targets = fake
    outputs = make_outputs([2])
    outputs["up"], outputs["reg_scale"] = torch.tensor(0.5), torch.tensor(4.0)  # 0-d buffers work too
    for key in ("logits", "boxes", "corners"):
        outputs[key] = outputs[key].detach().to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = build_criterion(DFineLossConfig(), K)(outputs, make_targets([2]))
    assert all(v.dtype == torch.float32 for v in losses.values())


def test_loss_config_rejects_unknown_and_bad_values():
    with pytest.raises(ValidationError, match="vfll"):
        DFineLossConfig(vfll=1.0)
    with pytest.raises(ValidationError, match="classification"):
        DFineLossConfig(classification="focal")
    with pytest.raises(ValidationError, match="ddf_temperature"):
        DFineLossConfig(ddf_temperature=0)
    assert DFineLossConfig(classification="mal").classification_weight == 1.0
