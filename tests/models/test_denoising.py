"""Contrastive denoising group (docs/rt-detr.md §4)."""

from __future__ import annotations

import torch

from detkit.models.denoising import build_denoising_group
from detkit.models.layers import box_cxcywh_to_xyxy


def _targets(n_per_image):
    """Small boxes near the centre: even the largest negative jitter stays inside the image (no clipping)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for n in n_per_image:
        cxcy = torch.rand(n, 2, generator=g) * 0.2 + 0.4
        wh = torch.rand(n, 2, generator=g) * 0.05 + 0.05
        out.append({"labels": torch.randint(0, 80, (n,), generator=g), "boxes": torch.cat([cxcy, wh], 1)})
    return out


def test_mask_matches_the_spec_example():
    dn = build_denoising_group(_targets([3, 1]), num_classes=80, num_queries=300)
    assert dn.num_group == 33 and dn.num_split == [198, 300]
    visible = ~dn.attn_mask
    assert visible.shape == (498, 498)
    assert (visible[:198].sum(1) == 306).all()  # own group (6) + all matching queries
    assert (visible[198:].sum(1) == 300).all()  # matching queries see no denoising query
    assert visible[7, 6:12].all() and not visible[7, :6].any()


def test_noise_levels_positives_inside_negatives_outside():
    torch.manual_seed(0)
    targets = _targets([4])
    dn = build_denoising_group(targets, 80, 300, num_denoising=100, label_noise_ratio=0.0)
    gt = targets[0]["boxes"]
    boxes = dn.ref_unact.sigmoid()[0].reshape(dn.num_group, 2, 4, 4)  # group, pos/neg, gt, coord
    half = (gt[:, 2:] / 2).repeat(1, 2)
    shift = (box_cxcywh_to_xyxy(boxes) - box_cxcywh_to_xyxy(gt)).abs() / half
    assert (shift[:, 0] <= 1 + 1e-4).all()  # positives move by less than half the box size
    # negatives move by 1-2 half-sizes (boxes turned inside out collapse to zero size and are not comparable)
    neg, neg_shift = boxes[:, 1], shift[:, 1]
    kept = (neg[..., 2:] > 1e-3).all(-1)
    assert kept.float().mean() > 0.5
    assert ((neg_shift >= 1 - 1e-3) & (neg_shift <= 2 + 1e-3))[kept].all()
    assert (dn.labels == targets[0]["labels"].repeat(2 * dn.num_group)).all()


def test_label_noise_rate_and_padding():
    torch.manual_seed(0)
    targets = _targets([10, 2])
    dn = build_denoising_group(targets, 80, 300, num_denoising=100)
    original = targets[0]["labels"].repeat(2 * dn.num_group)
    flipped = (dn.labels[0] != original).float().mean()
    assert 0.15 < flipped < 0.3  # 0.25 · (79/80)
    padded = dn.labels[1].reshape(-1, 10)[:, 2:]
    assert (padded == 80).all()
    assert torch.allclose(dn.ref_unact[1].reshape(-1, 10, 4)[:, 2:], torch.tensor(-11.5129), atol=1e-3)
