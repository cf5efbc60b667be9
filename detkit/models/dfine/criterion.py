"""D-FINE training criterion (docs/dfine-losses.md): classification (VFL or MAL), L1, GIoU, FGL and DDF.

Supervised sets and their term suffixes: the final decoder layer (none), each earlier layer (``_aux_i``), the
layer-0 pre-head (``_pre``), the encoder's top-k selection (``_enc_i``), and with denoising every decoder layer's
denoising part (``_dn_i``) and its pre-head (``_dn_pre``).

Matching: every non-denoising set is Hungarian-matched on its own; its classification term uses that matching
and the number of ground-truth boxes N. With ``union_set`` the box terms (and the local terms) of all of them use
the union matching (per query the ground truth it was most often matched to) and its size N_go. Denoising sets
use the fixed denoising assignment and N·groups. N and N_go are averaged over processes and clamped to ≥ 1.

Everything runs in fp32 with autocast off; NaN terms become 0. Returned terms are weighted; the loss is their sum.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from detkit.models.box_ops import cxcywh_to_xyxy, paired_iou_giou
from detkit.models.denoising import denoising_indices
from detkit.models.detr_losses import ClassificationTerm, class_targets
from detkit.models.dfine.fdr import bbox2distance, distance_bins, weighting_function
from detkit.models.dfine.loss_config import DFineLossConfig
from detkit.models.matcher import HungarianMatcher, Indices
from detkit.utils import distributed

Targets = Sequence[dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Pairs:
    """Matched pairs of one matching on the device: image, query and index into the batch's concatenated targets."""

    batch: torch.Tensor
    query: torch.Tensor
    target: torch.Tensor


@dataclass(frozen=True)
class Batch:
    """The batch's ground truth concatenated over images, on the device (fp32 boxes, cxcywh and xyxy)."""

    labels: torch.Tensor
    boxes: torch.Tensor
    boxes_xyxy: torch.Tensor
    sizes: list[int]


def union_matching(matchings: Sequence[Indices], sizes: Sequence[int]) -> Indices:
    """Per image, pool the (query, target) pairs of all ``matchings`` and keep, for each query, the target of its
    most frequent pair; ties go to the pair that appears first in the pool (so the first matching wins them).

    Host tensors in and out (the matcher's indices are on the host), sorted by query.
    """
    out: Indices = []
    for i, n in enumerate(sizes):
        q = torch.cat([m[i][0] for m in matchings]).to(torch.int64)
        t = torch.cat([m[i][1] for m in matchings]).to(torch.int64)
        if q.numel() == 0 or n == 0:
            out.append((q[:0], t[:0]))
            continue
        key = q * n + t
        pairs, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
        first = torch.full_like(pairs, key.numel()).scatter_reduce(0, inverse, torch.arange(key.numel()), "amin")
        order = torch.argsort(first, stable=True)
        order = order[torch.argsort(-counts[order], stable=True)]
        order = order[torch.argsort(pairs[order] // n, stable=True)]  # by query; within a query best pair first
        query = pairs[order] // n
        keep = torch.ones_like(query, dtype=torch.bool)
        keep[1:] = query[1:] != query[:-1]
        out.append((query[keep], (pairs[order] % n)[keep]))
    return out


def fgl_loss(corners: torch.Tensor, target: torch.Tensor, iou: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Fine-grained localisation loss, summed (the caller normalises).

    ``corners [n, 4, N+1]`` edge logits of the matched queries, ``target [n, 4]`` their continuous target distances,
    ``iou [n]`` their boxes' IoU with the ground truth, ``bins`` W. Per edge: cross-entropy against the two bins
    around the target with their interpolation weights (so it is smallest when the predicted distribution puts
    exactly those weights on those bins), times the IoU.
    """
    left, w_left, w_right = distance_bins(target.detach(), bins)
    log_p = F.log_softmax(corners, dim=-1)
    ce_left = -log_p.gather(-1, left[..., None]).squeeze(-1)
    ce_right = -log_p.gather(-1, left[..., None] + 1).squeeze(-1)
    return ((w_left * ce_left + w_right * ce_right) * iou.detach()[:, None]).sum()


def ddf_loss(
    student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor, matched: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Decoupled distillation loss of ``student [B, Q, 4, N+1]`` edge logits towards ``teacher`` (detached).

    Per edge KL(softmax(teacher/T) ‖ softmax(student/T))·T², times the query's ``weight [B, Q]``; the mean over
    the edges of ``matched [B, Q]`` queries and the mean over the others are mixed in proportion to the square
    roots of their edge counts (an empty part counts 0). Identical student and teacher give exactly 0.
    """
    t = temperature
    kl = (
        F.kl_div(
            F.log_softmax(student / t, -1), F.log_softmax(teacher.detach() / t, -1), reduction="none", log_target=True
        ).sum(-1)
        * t**2
    )  # [B, Q, 4]
    loss = kl * weight.detach()[..., None]
    m = matched[..., None].expand_as(loss).to(loss.dtype)
    n_m, n_u = m.sum(), (1 - m).sum()
    mean_m = (loss * m).sum() / n_m.clamp(min=1)
    mean_u = (loss * (1 - m)).sum() / n_u.clamp(min=1)
    r_m, r_u = n_m.sqrt(), n_u.sqrt()
    return (mean_m * r_m + mean_u * r_u) / (r_m + r_u).clamp(min=1e-12)


class DFineCriterion(torch.nn.Module):
    """``criterion(outputs, targets) -> {term: weighted scalar}`` for the D-FINE output contract."""

    def __init__(self, num_classes: int, cfg: DFineLossConfig | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.cfg = cfg or DFineLossConfig()
        self.matcher = HungarianMatcher(self.cfg.matcher)
        c = self.cfg
        self.classification = ClassificationTerm(c.classification, c.alpha, c.gamma, c.mal_gamma, c.mal_alpha)

    # ---- building blocks ----------------------------------------------------------------------------------
    @staticmethod
    def _batch(targets: Targets, device: torch.device) -> Batch:
        sizes = [int(t["labels"].shape[0]) for t in targets]
        labels = torch.cat([t["labels"].reshape(-1) for t in targets]).to(device, torch.int64)
        boxes = torch.cat([t["boxes"].reshape(-1, 4) for t in targets]).to(device, torch.float32)
        return Batch(labels, boxes, cxcywh_to_xyxy(boxes), sizes)

    @staticmethod
    def _flat(all_indices: Sequence[Indices], sizes: Sequence[int], device: torch.device) -> list[Pairs]:
        """Matchings (all on one device) as flat tensors on ``device``, with one copy for all of them (from pinned
        memory without waiting when it goes to a GPU)."""
        offsets = [0, *itertools.accumulate(sizes)][:-1]
        cols, lengths = [], []
        for indices in all_indices:
            b = torch.cat([torch.full_like(q, i, dtype=torch.int64) for i, (q, _) in enumerate(indices)])
            q = torch.cat([q.to(torch.int64) for q, _ in indices])
            t = torch.cat([t.to(torch.int64) + offsets[i] for i, (_, t) in enumerate(indices)])
            cols.append(torch.stack([b, q, t]))
            lengths.append(int(q.numel()))
        packed = torch.cat(cols, 1)
        if packed.device != device:
            pin = packed.device.type == "cpu" and device.type == "cuda"
            packed = (packed.pin_memory() if pin else packed).to(device, non_blocking=pin)
        return [Pairs(*part.unbind(0)) for part in packed.split(lengths, 1)]

    @staticmethod
    def _norm(count: int, device: torch.device) -> torch.Tensor:
        """A box count averaged over processes, at least 1 (created on the device: no copy)."""
        n = torch.full((), float(count), device=device)
        return distributed.all_reduce_mean(n).clamp(min=1.0)

    def _classification(self, out: dict, gt: Batch, pairs: Pairs, norm: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, boxes = out["logits"].float(), out["boxes"].float()
        iou, _ = paired_iou_giou(cxcywh_to_xyxy(boxes[pairs.batch, pairs.query]), gt.boxes_xyxy[pairs.target])
        score, onehot = class_targets(logits, pairs.batch, pairs.query, gt.labels[pairs.target], iou)
        value = self.classification(logits, score, onehot, norm)
        return {self.classification.name: self.cfg.classification_weight * value}

    def _boxes(self, out: dict, gt: Batch, pairs: Pairs, norm: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """L1 and GIoU terms, and the matched boxes' IoU (detached) for the local terms."""
        src = out["boxes"].float()[pairs.batch, pairs.query]
        iou, giou = paired_iou_giou(cxcywh_to_xyxy(src), gt.boxes_xyxy[pairs.target])
        terms = {
            "loss_bbox": self.cfg.bbox * (src - gt.boxes[pairs.target]).abs().sum() / norm,
            "loss_giou": self.cfg.giou * (1 - giou).sum() / norm,
        }
        return terms, iou.detach()

    def _local(
        self,
        out: dict,
        gt: Batch,
        pairs: Pairs,
        iou: torch.Tensor,
        norm: torch.Tensor,
        bins: torch.Tensor,
        reg_scale: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """FGL on the matched queries and, for a set with a teacher, DDF on all queries."""
        corners = out["corners"].float()
        b, q = corners.shape[:2]
        corners = corners.reshape(b, q, 4, bins.numel())
        ref = out["ref_points"].detach().float()[pairs.batch, pairs.query]
        target = bbox2distance(ref, gt.boxes_xyxy[pairs.target], reg_scale)
        fgl = fgl_loss(corners[pairs.batch, pairs.query], target, iou, bins) / norm
        terms = {"loss_fgl": self.cfg.fgl * fgl}
        if "teacher_corners" in out:
            teacher = out["teacher_corners"].float().reshape(b, q, 4, bins.numel())
            weight = out["teacher_logits"].detach().float().sigmoid().amax(-1)  # unmatched: teacher's best score
            weight = weight.index_put((pairs.batch, pairs.query), iou.to(weight.dtype))  # matched: own IoU
            matched = torch.zeros_like(weight, dtype=torch.bool).index_put(
                (pairs.batch, pairs.query), torch.ones_like(iou, dtype=torch.bool)
            )
            ddf = ddf_loss(corners, teacher, weight, matched, self.cfg.ddf_temperature)
            terms["loss_ddf"] = self.cfg.ddf * ddf
        return terms

    # ---- the criterion ----------------------------------------------------------------------------------------
    def forward(self, outputs: dict, targets: Targets) -> dict[str, torch.Tensor]:
        device = outputs["logits"].device
        with torch.autocast(device_type=device.type, enabled=False):
            losses = self._losses(outputs, targets, device)
        return {k: torch.where(torch.isnan(v), torch.zeros_like(v), v) for k, v in losses.items()}

    def _losses(self, outputs: dict, targets: Targets, device: torch.device) -> dict[str, torch.Tensor]:
        gt = self._batch(targets, device)
        num_boxes = self._norm(sum(gt.sizes), device)
        corners = outputs["corners"]
        up = torch.as_tensor(outputs["up"], dtype=torch.float32, device=device).detach()  # targets only
        reg_scale = torch.as_tensor(outputs["reg_scale"], dtype=torch.float32, device=device).detach()
        bins = weighting_function(corners.shape[-1] // 4 - 1, up, reg_scale)

        # non-denoising sets: (suffix, output, has local terms)
        sets: list[tuple[str, dict, bool]] = [("", outputs, True)]
        sets += [(f"_aux_{i}", o, True) for i, o in enumerate(outputs.get("aux_outputs") or [])]
        if outputs.get("pre_outputs") is not None:
            sets.append(("_pre", outputs["pre_outputs"], False))
        sets += [(f"_enc_{i}", o, False) for i, o in enumerate(outputs.get("enc_outputs") or [])]
        own = self.matcher.match_sets([o for _, o, _ in sets], targets)  # host indices
        host = list(own)
        if self.cfg.union_set:
            union = union_matching(own, gt.sizes)
            host.append(union)
            num_go = self._norm(sum(int(q.numel()) for q, _ in union), device)
        pairs = self._flat(host, gt.sizes, device)  # one host-to-device copy
        own_pairs = pairs[: len(sets)]
        go_pairs = pairs[-1] if self.cfg.union_set else None

        losses: dict[str, torch.Tensor] = {}
        for (suffix, out, local), mine in zip(sets, own_pairs):
            box_pairs, box_norm = (go_pairs, num_go) if go_pairs is not None else (mine, num_boxes)
            terms = self._set_terms(out, gt, (mine, num_boxes), (box_pairs, box_norm), local, bins, reg_scale)
            losses.update({k + suffix: v for k, v in terms.items()})

        dn_outputs, dn_meta = outputs.get("dn_outputs"), outputs.get("dn_meta")
        if dn_outputs:
            dn = (
                self._flat([denoising_indices(dn_meta, targets)], gt.sizes, device)[0],
                num_boxes * float(dn_meta["num_group"]),
            )
            dn_sets = [(f"_dn_{i}", o, True) for i, o in enumerate(dn_outputs)]
            if outputs.get("dn_pre_outputs") is not None:
                dn_sets.append(("_dn_pre", outputs["dn_pre_outputs"], False))
            for suffix, out, local in dn_sets:
                terms = self._set_terms(out, gt, dn, dn, local, bins, reg_scale)
                losses.update({k + suffix: v for k, v in terms.items()})
        return losses

    def _set_terms(
        self,
        out: dict,
        gt: Batch,
        cls: tuple[Pairs, torch.Tensor],
        box: tuple[Pairs, torch.Tensor],
        local: bool,
        bins: torch.Tensor,
        reg_scale: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The terms of one output set: classification on ``cls`` (pairs, normaliser), the others on ``box``."""
        terms = self._classification(out, gt, *cls)
        box_terms, iou = self._boxes(out, gt, *box)
        terms.update(box_terms)
        if local:
            terms.update(self._local(out, gt, box[0], iou, box[1], bins, reg_scale))
        return terms


def build_criterion(loss_cfg: DFineLossConfig | None, num_classes: int) -> DFineCriterion:
    """The family seam's ``build_criterion``."""
    return DFineCriterion(num_classes, loss_cfg)
