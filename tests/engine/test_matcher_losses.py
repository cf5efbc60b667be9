"""Matcher against brute force; each loss term on hand-checkable cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from detkit.models.denoising import denoising_indices
from detkit.models.detr_losses import varifocal_loss
from detkit.models.matcher import HungarianMatcher, MatcherConfig
from detkit.models.rtdetr.config import LossConfig
from detkit.models.rtdetr.criterion import SetCriterion


def _brute_force(cost: np.ndarray) -> float:
    q, t = cost.shape
    return min(sum(cost[p[j], j] for j in range(t)) for p in itertools.permutations(range(q), t))


@pytest.mark.parametrize("seed", range(4))
def test_matcher_finds_the_minimum_cost_assignment(seed):
    g = torch.Generator().manual_seed(seed)
    b, q, k = 3, 6, 4
    logits = torch.randn(b, q, k, generator=g)
    boxes = torch.rand(b, q, 2, generator=g) * 0.5 + 0.25
    boxes = torch.cat([boxes, torch.rand(b, q, 2, generator=g) * 0.3 + 0.05], -1)
    sizes = [3, 0, 4]
    targets = [
        {
            "labels": torch.randint(0, k, (n,), generator=g),
            "boxes": torch.cat(
                [torch.rand(n, 2, generator=g) * 0.5 + 0.25, torch.rand(n, 2, generator=g) * 0.3 + 0.05], -1
            ),
        }
        for n in sizes
    ]
    m = HungarianMatcher(MatcherConfig())
    indices = m(logits, boxes, targets)
    for i, (n, (qi, ti)) in enumerate(zip(sizes, indices)):
        assert len(qi) == len(ti) == n
        if n == 0:
            continue
        c = m.cost(logits[i : i + 1], boxes[i : i + 1], targets[i]["labels"], targets[i]["boxes"])[0].numpy()
        assert sorted(ti.tolist()) == list(range(n))
        assert len(set(qi.tolist())) == n  # one-to-one
        assert c[qi.numpy(), ti.numpy()].sum() == pytest.approx(_brute_force(c), abs=1e-5)


def test_matcher_several_sets_and_empty_batch():
    m = HungarianMatcher()
    out = {"logits": torch.zeros(2, 5, 3), "boxes": torch.full((2, 5, 4), 0.5)}
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    res = m.match_sets([out, out], empty)
    assert len(res) == 2 and all(len(q) == 0 for r in res for q, _ in r)


def test_matcher_cost_terms_by_hand():
    """One query, one target: focal class cost, L1 and -GIoU with the spec's weights."""
    logit = torch.tensor([[[0.0, 1.0]]])  # p(class 1) = sigmoid(1)
    box = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]])
    tgt_labels, tgt_boxes = torch.tensor([1]), torch.tensor([[0.6, 0.5, 0.2, 0.2]])
    p = 1 / (1 + math.exp(-1))
    cls = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8) - 0.75 * p**2 * -math.log(1 - p + 1e-8)
    l1 = 0.1
    # boxes [0.4,0.4,0.6,0.6] and [0.5,0.4,0.7,0.6]: inter 0.02, union 0.06, hull 0.3x0.2 = 0.06 -> giou = 1/3
    giou = 1 / 3
    c = HungarianMatcher().cost(logit, box, tgt_labels, tgt_boxes).item()
    assert c == pytest.approx(5 * l1 + 2 * cls - 2 * giou, abs=1e-5)


def test_varifocal_loss_by_hand():
    z = torch.tensor([[[0.0, 2.0]]])
    onehot = torch.tensor([[[0.0, 1.0]]])
    score = torch.tensor([[[0.0, 0.6]]])
    # negative entry: 0.75 * 0.5^2 * -log(1-0.5); positive: 0.6 * BCE(2, 0.6)
    p1 = 1 / (1 + math.exp(-2))
    neg = 0.75 * 0.25 * -math.log(0.5)
    pos = 0.6 * -(0.6 * math.log(p1) + 0.4 * math.log(1 - p1))
    got = varifocal_loss(z, score, onehot, 0.75, 2.0, torch.tensor(2.0)).item()
    assert got == pytest.approx((neg + pos) / 2, rel=1e-5)


def _targets():
    return [
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.6, 0.5, 0.2, 0.2]])},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
    ]


def test_box_terms_and_set_structure():
    """Query 0 of image 0 predicts a box shifted by 0.1: L1 = 0.1, GIoU = 1/3, IoU = 1/3 (VFL target)."""
    logits = torch.full((2, 3, 2), -5.0)
    logits[0, 0, 1] = 5.0
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05], [0.9, 0.9, 0.05, 0.05]]).expand(2, 3, 4).clone()
    out = {
        "logits": logits,
        "boxes": boxes,
        "aux_outputs": [{"logits": logits, "boxes": boxes}],
        "enc_outputs": [{"logits": logits, "boxes": boxes}],
        "dn_outputs": [{"logits": logits, "boxes": boxes}] * 2,
        "dn_meta": {
            "positive_idx": [torch.tensor([0, 2]), torch.zeros(0, dtype=torch.int64)],
            "num_group": 2,
            "num_split": [4, 3],
        },
    }
    losses = SetCriterion(2, LossConfig())(out, _targets())
    assert set(losses) == {
        f"loss_{t}{s}" for t in ("vfl", "bbox", "giou") for s in ("", "_aux_0", "_enc_0", "_dn_0", "_dn_1")
    }
    assert losses["loss_bbox"].item() == pytest.approx(5 * 0.1, rel=1e-5)  # N = 1, weight 5
    assert losses["loss_giou"].item() == pytest.approx(2 * (1 - 1 / 3), rel=1e-5)
    # DN: positives 0 and 2 both matched to GT 0 (group-major), normaliser N * G = 2
    l1_dn = (0.1 + (abs(0.9 - 0.6) + 0.4 + 0.15 + 0.15)) / 2
    assert losses["loss_bbox_dn_0"].item() == pytest.approx(5 * l1_dn, rel=1e-5)
    assert all(torch.isfinite(v) for v in losses.values())


def test_losses_are_fp32_under_autocast():
    logits = torch.randn(2, 3, 2, dtype=torch.bfloat16, requires_grad=True)
    boxes = torch.rand(2, 3, 4).mul(0.3).add(0.2).to(torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = SetCriterion(2)({"logits": logits, "boxes": boxes}, _targets())
    assert all(v.dtype == torch.float32 for v in losses.values())
    sum(losses.values()).backward()
    assert logits.grad is not None and boxes.grad is not None


def test_all_background_batch_gives_finite_loss_and_gradients():
    logits = torch.randn(2, 3, 2, requires_grad=True)
    boxes = torch.rand(2, 3, 4, requires_grad=True)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    out = {
        "logits": logits,
        "boxes": boxes,
        "dn_outputs": [{"logits": logits, "boxes": boxes}],
        "dn_meta": {"positive_idx": [torch.zeros(0, dtype=torch.int64)] * 2, "num_group": 1, "num_split": [2, 3]},
    }
    losses = SetCriterion(2)(out, empty)
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and losses["loss_bbox"].item() == 0.0 and losses["loss_vfl"].item() > 0
    assert boxes.grad is not None  # the graph still reaches every output (DDP needs no unused parameters)


def test_denoising_indices_group_major():
    meta = {"positive_idx": [torch.tensor([0, 1, 6, 7]), torch.tensor([0, 6])], "num_group": 2}
    t = [{"labels": torch.tensor([0, 1])}, {"labels": torch.tensor([2])}]
    idx = denoising_indices(meta, t)
    assert idx[0][1].tolist() == [0, 1, 0, 1] and idx[1][1].tolist() == [0, 0]


def test_box_ops_agree_with_torchvision():
    from torchvision.ops import box_convert, generalized_box_iou

    from detkit.models.box_ops import cxcywh_to_xyxy, paired_iou_giou, pairwise_giou

    g = torch.Generator().manual_seed(1)
    a = torch.cat([torch.rand(7, 2, generator=g), torch.rand(7, 2, generator=g) * 0.5 + 0.01], 1)
    b = torch.cat([torch.rand(5, 2, generator=g), torch.rand(5, 2, generator=g) * 0.5 + 0.01], 1)
    xa, xb = cxcywh_to_xyxy(a), cxcywh_to_xyxy(b)
    assert torch.allclose(xa, box_convert(a, "cxcywh", "xyxy"))
    ref = generalized_box_iou(xa, xb)
    assert torch.allclose(pairwise_giou(xa, xb), ref, atol=1e-6)
    _, giou = paired_iou_giou(xa[:5], xb)
    assert torch.allclose(giou, ref[:5].diagonal(), atol=1e-6)
