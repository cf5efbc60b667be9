"""Varifocal loss (unchanged from RT-DETR's) and DEIM's MAL against its per-element formula."""

from __future__ import annotations

import math

import pytest
import torch

from detkit.models.detr_losses import ClassificationTerm, class_targets, mal_loss, varifocal_loss
from detkit.models.detr_losses import varifocal_loss as rtdetr_varifocal_loss


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 5, 3, generator=g) * 2
    b, q, lab = torch.tensor([0, 0, 1]), torch.tensor([1, 4, 2]), torch.tensor([2, 0, 1])
    iou = torch.tensor([0.9, 0.1, 0.5])
    score, onehot = class_targets(logits, b, q, lab, iou)
    return logits, score, onehot


def test_class_targets_put_iou_and_one_at_the_matched_class_only():
    logits, score, onehot = _case()
    assert onehot.sum().item() == 3 and onehot[0, 1, 2] == 1 and onehot[1, 2, 1] == 1
    assert score[0, 1, 2].item() == pytest.approx(0.9) and score[0, 4, 0].item() == pytest.approx(0.1)
    assert score.sum().item() == pytest.approx(1.5)
    score_neg, _ = class_targets(logits, torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), torch.tensor([-0.2]))
    assert score_neg.sum().item() == 0.0  # a negative IoU never becomes a negative target


@pytest.mark.parametrize("seed", range(3))
def test_varifocal_is_rtdetrs(seed):
    logits, score, onehot = _case(seed)
    n = torch.tensor(3.0)
    torch.testing.assert_close(
        varifocal_loss(logits, score, onehot, 0.75, 2.0, n), rtdetr_varifocal_loss(logits, score, onehot, 0.75, 2.0, n)
    )


@pytest.mark.parametrize("alpha", [None, 0.5])
def test_mal_matches_the_direct_formula(alpha):
    logits, score, onehot = _case(1)
    gamma, n = 1.5, 3.0
    expected = 0.0
    for z, q, y in zip(logits.flatten().tolist(), score.flatten().tolist(), onehot.flatten().tolist()):
        p = 1 / (1 + math.exp(-z))
        if y == 1:
            t = q**gamma
            expected += -(t * math.log(p) + (1 - t) * math.log(1 - p))
        else:
            expected += -(alpha if alpha is not None else 1.0) * p**gamma * math.log(1 - p)
    got = mal_loss(logits, score, onehot, gamma, n, alpha=alpha)
    assert got.item() == pytest.approx(expected / n, rel=1e-5)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_positive_gradients_vfl_weights_by_iou_mal_does_not(q):
    """For a positive with IoU q: d VFL/dz = q·(p − q) (weighted by q, optimum p = q); d MAL/dz = p − q^γ (weight 1,
    optimum p = q^γ)."""
    logits = torch.tensor([[[-1.0, 0.0, 1.5]]], requires_grad=True)
    onehot = torch.ones(1, 1, 3)
    score = torch.full((1, 1, 3), q)
    p = logits.detach().sigmoid()
    vfl_grad = torch.autograd.grad(varifocal_loss(logits, score, onehot, 0.75, 2.0, 1.0), logits)[0]
    mal_grad = torch.autograd.grad(mal_loss(logits, score, onehot, 1.5, 1.0), logits)[0]
    torch.testing.assert_close(vfl_grad, q * (p - q))
    torch.testing.assert_close(mal_grad, p - q**1.5)


def test_classification_term_switches_by_name():
    logits, score, onehot = _case(2)
    vfl, mal = ClassificationTerm("vfl"), ClassificationTerm("mal", mal_gamma=1.5)
    assert (vfl.name, mal.name) == ("loss_vfl", "loss_mal")
    torch.testing.assert_close(vfl(logits, score, onehot, 2.0), varifocal_loss(logits, score, onehot, 0.75, 2.0, 2.0))
    torch.testing.assert_close(mal(logits, score, onehot, 2.0), mal_loss(logits, score, onehot, 1.5, 2.0))
