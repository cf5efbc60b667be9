"""FGL (two-bin localisation loss) and DDF (decoupled distillation) on hand-checkable cases."""

from __future__ import annotations

import math

import pytest
import torch

from detkit.models.dfine.criterion import ddf_loss, fgl_loss
from detkit.models.dfine.fdr import distance_bins, weighting_function

N = 32
W = weighting_function(N, 0.5, 4.0)


def _true_distribution(target: torch.Tensor) -> torch.Tensor:
    """The distribution FGL asks for: the two interpolation weights on the two bins around each target."""
    left, w_left, w_right = distance_bins(target, W)
    dist = torch.zeros(*target.shape, N + 1)
    dist.scatter_(-1, left[..., None], w_left[..., None])
    dist.scatter_add_(-1, left[..., None] + 1, w_right[..., None])
    return dist


def test_fgl_is_minimal_at_the_true_distribution():
    target = torch.tensor([[0.3, -1.7, 2.2, 0.0], [W[5].item(), 3.9, -0.01, W[30].item()]])
    iou = torch.tensor([0.8, 0.5])
    truth = _true_distribution(target)
    best = truth.clamp(min=1e-12).log().requires_grad_()
    loss = fgl_loss(best, target, iou, W)
    (grad,) = torch.autograd.grad(loss, best)
    assert grad.abs().max().item() < 1e-6  # a stationary point
    # its value is the IoU-weighted entropy of the target distribution
    entropy = -(truth * truth.clamp(min=1e-12).log()).sum(-1)
    assert loss.item() == pytest.approx((entropy * iou[:, None]).sum().item(), abs=1e-5)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        other = best.detach() + 0.3 * torch.randn(best.shape, generator=g)
        assert fgl_loss(other, target, iou, W).item() > loss.item()


def test_fgl_by_hand_and_scaled_by_iou():
    target = torch.tensor([[0.25 * W[17].item() + 0.75 * W[18].item()] * 4])  # 3/4 of the way from bin 17 to 18
    logits = torch.zeros(1, 4, N + 1)  # uniform: CE = log(N+1) on every bin
    expected = 4 * math.log(N + 1)
    assert fgl_loss(logits, target, torch.tensor([1.0]), W).item() == pytest.approx(expected, rel=1e-5)
    assert fgl_loss(logits, target, torch.tensor([0.25]), W).item() == pytest.approx(expected / 4, rel=1e-5)
    logits[0, :, 18] = 2.0  # mass on the right bin (weight 3/4) helps more than on the left one
    right = fgl_loss(logits, target, torch.tensor([1.0]), W)
    logits[0, :, 18], logits[0, :, 17] = 0.0, 2.0
    left = fgl_loss(logits, target, torch.tensor([1.0]), W)
    assert right.item() < left.item() < expected


def _ddf_case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 5, 4, N + 1, generator=g)
    teacher = torch.randn(2, 5, 4, N + 1, generator=g)
    weight = torch.rand(2, 5, generator=g)
    matched = torch.zeros(2, 5, dtype=torch.bool)
    matched[0, 1] = matched[0, 3] = matched[1, 4] = True
    return student, teacher, weight, matched


def test_ddf_is_zero_when_student_equals_teacher_and_positive_otherwise():
    student, teacher, weight, matched = _ddf_case()
    assert ddf_loss(student, student.clone(), weight, matched, 5.0).item() == 0.0
    assert ddf_loss(student, teacher, weight, matched, 5.0).item() > 0.0


def test_ddf_decoupled_means_by_hand():
    student, teacher, weight, matched = _ddf_case(1)
    t = 5.0
    p_t = (teacher / t).softmax(-1)
    kl = (p_t * (p_t.log() - (student / t).log_softmax(-1))).sum(-1) * t**2 * weight[..., None]  # [2, 5, 4]
    a, b = kl[matched].mean(), kl[~matched].mean()
    k_m, k_u = 3 * 4, 7 * 4
    expected = (a * math.sqrt(k_m) + b * math.sqrt(k_u)) / (math.sqrt(k_m) + math.sqrt(k_u))
    assert ddf_loss(student, teacher, weight, matched, t).item() == pytest.approx(expected.item(), rel=1e-5)
    # all queries unmatched: the plain weighted mean
    none = torch.zeros_like(matched)
    assert ddf_loss(student, teacher, weight, none, t).item() == pytest.approx(kl.mean().item(), rel=1e-5)


def test_ddf_gradient_reaches_the_student_only():
    student, teacher, weight, matched = _ddf_case(2)
    student.requires_grad_()
    teacher.requires_grad_()
    ddf_loss(student, teacher, weight, matched, 5.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
