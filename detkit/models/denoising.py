"""Contrastive denoising (CDN) queries built from the ground truth of a training batch.

Each group holds M positive queries (GT boxes jittered by less than half their size) followed by M negative
queries (jittered by one to two half-sizes), with labels flipped at random. Groups cannot see each other and
the matching queries cannot see any denoising query. Everything is built on the targets' device; only tensor
*shapes* (the per-image GT counts) are read on the host, which needs no device synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from detkit.models.layers import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, inverse_sigmoid

# stands in for the ground truth when no image in the batch has one, so every step (and every DDP rank) runs the
# same graph; it has no positive query, so it adds nothing to the losses
DUMMY_BOX = (0.5, 0.5, 0.1, 0.1)


@dataclass
class DenoisingGroup:
    labels: torch.Tensor  # [B, N_dn] noised class indices (num_classes = padding)
    ref_unact: torch.Tensor  # [B, N_dn, 4] noised boxes in logit space
    attn_mask: torch.Tensor  # [N_dn + Q, N_dn + Q] bool, True = may not attend
    positive_idx: list[torch.Tensor]  # per image: indices of the positive queries, group-major
    num_group: int
    num_split: list[int]  # [N_dn, Q]

    def meta(self) -> dict:
        return {"positive_idx": self.positive_idx, "num_group": self.num_group, "num_split": self.num_split}


def build_denoising_group(
    targets: list[dict[str, torch.Tensor]],
    num_classes: int,
    num_queries: int,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> DenoisingGroup | None:
    """Return the DN group for ``targets`` (labels int64 ``[n]``, boxes normalised cxcywh ``[n, 4]``).

    ``None`` only when ``num_denoising`` is 0. A batch without any object gets the one-query dummy group.
    """
    if num_denoising <= 0:
        return None
    device = targets[0]["boxes"].device
    counts = [int(t["labels"].shape[0]) for t in targets]  # shapes only: no host sync
    batch = len(targets)
    max_gt = max(counts)
    empty_batch = max_gt == 0
    if empty_batch:
        max_gt, num_group = 1, 1
    else:
        num_group = max(1, num_denoising // max_gt)

    # [B, M] padded ground truth
    labels = torch.full((batch, max_gt), num_classes, dtype=torch.long, device=device)
    boxes = torch.zeros(batch, max_gt, 4, device=device)
    is_real = torch.zeros(batch, max_gt, dtype=torch.bool, device=device)
    if empty_batch:
        boxes[:] = torch.tensor(DUMMY_BOX, device=device)
    else:
        for b, (t, n) in enumerate(zip(targets, counts)):
            if n:
                labels[b, :n] = t["labels"]
                boxes[b, :n] = t["boxes"].to(boxes.dtype)
                is_real[b, :n] = True

    # tile to [B, 2·M·G]: each group is M positives then M negatives
    group_size = 2 * max_gt
    num_dn = group_size * num_group
    labels = labels.repeat(1, 2 * num_group)
    boxes = boxes.repeat(1, 2 * num_group, 1)
    is_real = is_real.repeat(1, 2 * num_group)
    is_negative = (torch.arange(num_dn, device=device) % group_size >= max_gt)[None, :, None]

    if label_noise_ratio > 0:
        flip = (torch.rand(labels.shape, device=device, generator=generator) < label_noise_ratio * 0.5) & is_real
        random_labels = torch.randint(0, num_classes, labels.shape, device=device, generator=generator)
        labels = torch.where(flip, random_labels, labels)

    if box_noise_scale > 0:
        xyxy = box_cxcywh_to_xyxy(boxes)
        half = (boxes[..., 2:] * 0.5).repeat(1, 1, 2) * box_noise_scale
        sign = torch.randint(0, 2, boxes.shape, device=device, generator=generator).to(boxes.dtype) * 2.0 - 1.0
        magnitude = torch.rand(boxes.shape, device=device, generator=generator) + is_negative.to(boxes.dtype)
        xyxy = (xyxy + sign * magnitude * half).clamp(0.0, 1.0)
        boxes = box_xyxy_to_cxcywh(xyxy)
    ref_unact = inverse_sigmoid(boxes)

    # block-diagonal mask over DN groups; matching queries (group −1) see no DN query
    total = num_dn + num_queries
    index = torch.arange(total, device=device)
    group = torch.where(index < num_dn, index // group_size, torch.full_like(index, -1))
    attn_mask = (index[None, :] < num_dn) & (group[:, None] != group[None, :])

    offsets = torch.arange(num_group, device=device)[:, None] * group_size
    positive_idx = [(offsets + torch.arange(n, device=device)[None, :]).reshape(-1) for n in counts]
    return DenoisingGroup(labels, ref_unact, attn_mask, positive_idx, num_group, [num_dn, num_queries])


def denoising_indices(
    dn_meta: dict, targets: Sequence[dict[str, torch.Tensor]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Positive denoising query ``positive_idx[b][g·n_b + j]`` is matched to ground truth ``j`` (group-major)."""
    groups = int(dn_meta["num_group"])
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    for pos, t in zip(dn_meta["positive_idx"], targets):
        n = int(t["labels"].shape[0])
        pos = pos.to(torch.int64)
        tgt = torch.arange(n, dtype=torch.int64, device=pos.device).repeat(groups)
        if pos.numel() != tgt.numel():  # the dummy DN group of a batch without objects: nothing to supervise
            pos, tgt = pos[:0], tgt[:0]
        out.append((pos, tgt))
    return out
