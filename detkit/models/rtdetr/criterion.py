"""RT-DETR training criterion (docs/rt-detr.md §5): varifocal (or DEIM's MAL), L1 and GIoU losses over every
supervised set.

Sets: the final decoder layer and each auxiliary layer (Hungarian-matched, normaliser N), the encoder's
top-Q selection (Hungarian, N, key suffix ``_enc_0``) and the denoising part of all decoder layers (fixed
positive-query matching from ``dn_meta``, normaliser N·G, suffix ``_dn_{i}``). N = number of ground-truth
boxes in the global batch (all-reduced over processes, divided by the world size, clamped to >= 1).
Everything is computed in fp32 with autocast disabled. Returned terms are already weighted; the total loss
is their plain sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from detkit.models.box_ops import cxcywh_to_xyxy, paired_iou_giou
from detkit.models.denoising import denoising_indices
from detkit.models.detr_losses import ClassificationTerm, class_targets
from detkit.models.matcher import HungarianMatcher, Indices
from detkit.models.rtdetr.config import LossConfig
from detkit.utils import distributed

Targets = Sequence[dict[str, torch.Tensor]]


def _flat_indices(indices: Indices, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image index, query index, target index within its image) for all matched pairs."""
    batch = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(indices)]).to(device)
    query = torch.cat([q for q, _ in indices]).to(device)
    tgt = torch.cat([t for _, t in indices]).to(device)
    return batch, query, tgt


class SetCriterion(torch.nn.Module):
    def __init__(self, num_classes: int, cfg: LossConfig | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.cfg = cfg or LossConfig()
        self.matcher = HungarianMatcher(self.cfg.matcher)
        c = self.cfg
        self.classification = ClassificationTerm(c.classification, c.alpha, c.gamma, c.mal_gamma, c.mal_alpha)

    def set_loss(
        self, out: dict[str, torch.Tensor], targets: Targets, indices: Indices, num_boxes: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The three weighted terms for one output set and its matching."""
        logits, boxes = out["logits"].float(), out["boxes"].float()
        device = logits.device
        b_idx, q_idx, t_idx = _flat_indices(indices, device)
        # gather matched targets: offset per image into the concatenated target tensors
        sizes = torch.tensor([int(t["labels"].shape[0]) for t in targets], device=device)
        offsets = torch.cumsum(sizes, 0) - sizes
        flat = offsets[b_idx] + t_idx
        tgt_boxes = torch.cat([t["boxes"] for t in targets]).to(device).float()[flat]
        tgt_labels = torch.cat([t["labels"] for t in targets]).to(device)[flat]
        src_boxes = boxes[b_idx, q_idx]

        iou, giou = paired_iou_giou(cxcywh_to_xyxy(src_boxes), cxcywh_to_xyxy(tgt_boxes))
        score, onehot = class_targets(logits, b_idx, q_idx, tgt_labels, iou)
        c = self.cfg
        weight = c.mal if c.classification == "mal" else c.vfl
        return {
            self.classification.name: weight * self.classification(logits, score, onehot, num_boxes),
            "loss_bbox": c.bbox * (src_boxes - tgt_boxes).abs().sum() / num_boxes,
            "loss_giou": c.giou * (1 - giou).sum() / num_boxes,
        }

    def num_boxes(self, targets: Targets, device: torch.device) -> torch.Tensor:
        n = torch.tensor(float(sum(int(t["labels"].shape[0]) for t in targets)), device=device)
        return distributed.all_reduce_mean(n).clamp(min=1.0)

    def forward(self, outputs: dict, targets: Targets) -> dict[str, torch.Tensor]:
        device = outputs["logits"].device
        with torch.autocast(device_type=device.type, enabled=False):
            num_boxes = self.num_boxes(targets, device)
            matched_sets: list[tuple[str, dict]] = [("", outputs)]
            matched_sets += [(f"_aux_{i}", o) for i, o in enumerate(outputs.get("aux_outputs") or [])]
            matched_sets += [(f"_enc_{i}", o) for i, o in enumerate(outputs.get("enc_outputs") or [])]
            all_indices = self.matcher.match_sets([o for _, o in matched_sets], targets)
            losses: dict[str, torch.Tensor] = {}
            for (suffix, out), indices in zip(matched_sets, all_indices):
                losses.update({k + suffix: v for k, v in self.set_loss(out, targets, indices, num_boxes).items()})

            dn_outputs, dn_meta = outputs.get("dn_outputs"), outputs.get("dn_meta")
            if dn_outputs:
                dn_indices = denoising_indices(dn_meta, targets)
                dn_norm = num_boxes * dn_meta["num_group"]
                for i, out in enumerate(dn_outputs):
                    losses.update(
                        {f"{k}_dn_{i}": v for k, v in self.set_loss(out, targets, dn_indices, dn_norm).items()}
                    )
        return losses
