"""Classification losses shared by the DETR families (docs/dfine-losses.md §4).

Both losses read the same two ``[B, Q, K]`` tensors built by :func:`class_targets`: a one-hot of the matched
class at the matched queries and the matched box's IoU with its ground truth at the same places (0 elsewhere).

- :func:`varifocal_loss` (RT-DETR, D-FINE): BCE against the IoU, positives weighted by the IoU, negatives by
  ``alpha·p^gamma``.
- :func:`mal_loss` (DEIM's Matchability-Aware Loss): BCE against ``IoU^gamma``, every positive weighted 1,
  negatives by ``p^gamma`` (optionally times ``alpha``).

:class:`ClassificationTerm` picks one of them by name, so a criterion switches VFL → MAL with one setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

ClassificationKind = Literal["vfl", "mal"]


def class_targets(
    logits: torch.Tensor, batch_idx: torch.Tensor, query_idx: torch.Tensor, labels: torch.Tensor, iou: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(score, onehot)`` shaped like ``logits``: 1 / the (detached, ≥ 0) IoU at (image, query, label) of every
    matched pair, 0 elsewhere."""
    onehot = torch.zeros_like(logits)
    onehot[batch_idx, query_idx, labels] = 1.0
    score = torch.zeros_like(logits)
    score[batch_idx, query_idx, labels] = iou.detach().clamp(min=0).to(score.dtype)
    return score, onehot


def varifocal_loss(
    logits: torch.Tensor,
    target_score: torch.Tensor,
    target_onehot: torch.Tensor,
    alpha: float,
    gamma: float,
    num_boxes: torch.Tensor | float,
) -> torch.Tensor:
    """Σ w·BCE(z, s) / N with w = α·σ(z)^γ·(1−t) + s (sigmoid detached in the weight)."""
    prob = logits.detach().sigmoid()
    weight = alpha * prob.pow(gamma) * (1 - target_onehot) + target_score
    loss = F.binary_cross_entropy_with_logits(logits, target_score, weight=weight, reduction="none")
    return loss.sum() / num_boxes


def mal_loss(
    logits: torch.Tensor,
    target_score: torch.Tensor,
    target_onehot: torch.Tensor,
    gamma: float,
    num_boxes: torch.Tensor | float,
    alpha: float | None = None,
) -> torch.Tensor:
    """Σ w·BCE(z, s^γ) / N with w = [α]·σ(z)^γ·(1−t) + t (sigmoid detached in the weight; no α when None).

    For a positive (t = 1, IoU q) this is −(q^γ·log p + (1 − q^γ)·log(1 − p)); for a negative −p^γ·log(1 − p).
    """
    prob = logits.detach().sigmoid()
    neg = prob.pow(gamma) * (1 - target_onehot)
    if alpha is not None:
        neg = alpha * neg
    target = target_score.pow(gamma) * target_onehot
    loss = F.binary_cross_entropy_with_logits(logits, target, weight=neg + target_onehot, reduction="none")
    return loss.sum() / num_boxes


@dataclass(frozen=True)
class ClassificationTerm:
    """The classification loss of a criterion: ``kind`` chooses VFL or MAL; ``name`` is its term name."""

    kind: ClassificationKind = "vfl"
    vfl_alpha: float = 0.75
    vfl_gamma: float = 2.0
    mal_gamma: float = 1.5
    mal_alpha: float | None = None

    @property
    def name(self) -> str:
        return f"loss_{self.kind}"

    def __call__(
        self, logits: torch.Tensor, score: torch.Tensor, onehot: torch.Tensor, num_boxes: torch.Tensor | float
    ) -> torch.Tensor:
        if self.kind == "mal":
            return mal_loss(logits, score, onehot, self.mal_gamma, num_boxes, self.mal_alpha)
        return varifocal_loss(logits, score, onehot, self.vfl_alpha, self.vfl_gamma, num_boxes)
