"""Hungarian matching of predictions to ground truth (docs/rt-detr.md §5.1).

The cost of every prediction against every ground-truth box of the batch is computed in one vectorised
pass on the model's device (for several output sets at once), copied to the host once, and split per image
for ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from scipy.optimize import linear_sum_assignment

from detkit.models.box_ops import cxcywh_to_xyxy, pairwise_giou


class MatcherConfig(BaseModel):
    """Hungarian matching cost (docs/rt-detr.md §5.1): focal class cost, L1 and GIoU box costs."""

    model_config = ConfigDict(extra="forbid")

    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    alpha: float = 0.25
    gamma: float = 2.0


Indices = list[tuple[torch.Tensor, torch.Tensor]]  # per image: (query indices, target indices), int64


class HungarianMatcher:
    def __init__(self, cfg: MatcherConfig | None = None):
        self.cfg = cfg or MatcherConfig()

    @torch.no_grad()
    def cost(
        self, logits: torch.Tensor, boxes: torch.Tensor, tgt_labels: torch.Tensor, tgt_boxes: torch.Tensor
    ) -> torch.Tensor:
        """Matching cost ``[B, Q, T]`` of all queries against all ``T`` targets of the batch (fp32)."""
        c = self.cfg
        b, q, _ = logits.shape
        prob = logits.flatten(0, 1).float().sigmoid()[:, tgt_labels]  # [B*Q, T]
        pos = c.alpha * (1 - prob) ** c.gamma * -(prob + 1e-8).log()
        neg = (1 - c.alpha) * prob**c.gamma * -(1 - prob + 1e-8).log()
        cost_class = pos - neg
        out_boxes = boxes.flatten(0, 1).float()
        cost_bbox = torch.cdist(out_boxes, tgt_boxes.float(), p=1)
        if tgt_boxes.shape[0]:
            cost_giou = -pairwise_giou(cxcywh_to_xyxy(out_boxes), cxcywh_to_xyxy(tgt_boxes.float()))
        else:
            cost_giou = cost_bbox
        total = c.cost_bbox * cost_bbox + c.cost_class * cost_class + c.cost_giou * cost_giou
        return total.view(b, q, -1)

    @torch.no_grad()
    def match_sets(
        self, outputs: Sequence[dict[str, torch.Tensor]], targets: Sequence[dict[str, torch.Tensor]]
    ) -> list[Indices]:
        """Match several output sets (each ``{"logits", "boxes"}``) against the same targets.

        One device-to-host copy for all cost matrices of the step.
        """
        sizes = [int(t["labels"].shape[0]) for t in targets]
        device = outputs[0]["logits"].device
        if sum(sizes) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return [[(empty, empty) for _ in sizes] for _ in outputs]
        tgt_labels = torch.cat([t["labels"] for t in targets]).to(device)
        tgt_boxes = torch.cat([t["boxes"] for t in targets]).to(device)
        costs = [self.cost(o["logits"], o["boxes"], tgt_labels, tgt_boxes) for o in outputs]
        if len({c.shape[1] for c in costs}) == 1:
            host = list(torch.stack(costs).cpu().numpy())  # the one copy of the step
        else:  # sets with different query counts cannot be stacked
            host = [c.cpu().numpy() for c in costs]
        results: list[Indices] = [_assign(c, sizes) for c in host]
        return results

    def __call__(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]]
    ) -> Indices:
        return self.match_sets([{"logits": logits, "boxes": boxes}], targets)[0]


def _assign(cost: np.ndarray, sizes: list[int]) -> Indices:
    """Split a ``[B, Q, T]`` host cost matrix by image and solve each assignment."""
    out: Indices = []
    start = 0
    for i, n in enumerate(sizes):
        if n == 0:
            e = torch.zeros(0, dtype=torch.int64)
            out.append((e, e))
            continue
        rows, cols = linear_sum_assignment(cost[i, :, start : start + n])
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        start += n
    return out
