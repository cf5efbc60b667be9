"""D-FINE decoder: query selection as RT-DETR, gated deformable layers, FDR box refinement and the LQE
(docs/dfine.md §4-§7).

Key names follow the official checkpoints: ``input_proj`` (X only), ``decoder.layers.{i}`` (``self_attn``,
``norm1``, ``cross_attn``, ``gateway``, ``linear1/2``, ``norm3``), ``decoder.lqe_layers.{i}.reg_conf``, ``up``,
``reg_scale``, ``denoising_class_embed``, ``query_pos_head``, ``enc_output.proj/norm``, ``enc_score_head``,
``enc_bbox_head``, ``dec_score_head.{i}``, ``pre_bbox_head``, ``dec_bbox_head.{i}``.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from detkit.errors import DetkitError
from detkit.models.denoising import DenoisingGroup
from detkit.models.detr_base import DecoderTrace
from detkit.models.dfine.fdr import distance2bbox, integral, weighting_function
from detkit.models.layers import inverse_sigmoid, make_activation
from detkit.models.rtdetr.decoder import generate_anchors


class MLP(nn.Module):
    """``num_layers`` Linear layers with ``act`` between them. Keys: ``layers.{i}``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, act: str = "relu"):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return x


class DeformableAttention(nn.Module):
    """Multi-scale deformable attention without value/output projections, ``num_points[l]`` points on level l,
    offsets scaled by 1/num_points[l] and one softmax over all points of all levels per head.

    Keys ``sampling_offsets``, ``attention_weights`` (the official ``num_points_scale`` buffer is derived, so it is
    not persistent here).
    """

    def __init__(self, dim: int, num_heads: int, num_points: list[int], offset_scale: float = 0.5):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.num_points = dim, num_heads, list(num_points)
        self.head_dim = dim // num_heads
        self.offset_scale = offset_scale
        total = sum(self.num_points)
        self.sampling_offsets = nn.Linear(dim, num_heads * total * 2)
        self.attention_weights = nn.Linear(dim, num_heads * total)
        scale = torch.cat([torch.full((p,), 1.0 / p) for p in self.num_points])
        self.register_buffer("num_points_scale", scale, persistent=False)
        self.trace: DecoderTrace | None = None  # set only while DFine.record_intermediates() is active
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        direction = torch.stack([theta.cos(), theta.sin()], -1)
        direction = direction / direction.abs().max(-1, keepdim=True).values  # [H, 2]
        steps = torch.cat([torch.arange(1, p + 1, dtype=torch.float32) for p in self.num_points])  # [ΣP]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_((direction[:, None, :] * steps[None, :, None]).reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_boxes: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """query ``[B, Q, D]``, reference_boxes ``[B, Q, 4]`` (cxcywh in [0, 1]), value ``[B, S, D]``."""
        b, q, _ = query.shape
        heads, total = self.num_heads, sum(self.num_points)
        offsets = self.sampling_offsets(query).reshape(b, q, heads, total, 2)
        weights = self.attention_weights(query).reshape(b, q, heads, total).softmax(-1)
        ref = reference_boxes[:, :, None, None, :]
        scale = self.num_points_scale.to(query.dtype)[:, None]
        locations = ref[..., :2] + offsets * scale * ref[..., 2:] * self.offset_scale  # [B, Q, H, ΣP, 2]
        if self.trace is not None:
            self._record(locations, weights, reference_boxes)
        return self._sample(value, spatial_shapes, locations, weights)

    def _sample(self, value, spatial_shapes, locations, weights) -> torch.Tensor:
        b, s, _ = value.shape
        q, heads, d = locations.shape[1], self.num_heads, self.head_dim
        # [B, S, H, d] → [B·H, d, S]
        value = value.reshape(b, s, heads, d).permute(0, 2, 3, 1).reshape(b * heads, d, s)
        grids = (2.0 * locations - 1.0).transpose(1, 2).reshape(b * heads, q, -1, 2)  # [B·H, Q, ΣP, 2]
        samples = []
        for value_l, grid_l, (h, w) in zip(
            value.split([h * w for h, w in spatial_shapes], dim=-1),
            grids.split(self.num_points, dim=2),
            spatial_shapes,
        ):
            samples.append(
                F.grid_sample(
                    value_l.reshape(b * heads, d, h, w),
                    grid_l,
                    mode="bilinear",
                    padding_mode="zeros",
                    align_corners=False,
                )
            )
        sampled = torch.cat(samples, dim=-1)  # [B·H, d, Q, ΣP]
        out = (sampled * weights.transpose(1, 2).reshape(b * heads, 1, q, -1)).sum(-1)  # [B·H, d, Q]
        return out.reshape(b, heads * d, q).transpose(1, 2)

    def _record(self, locations: torch.Tensor, weights: torch.Tensor, reference_boxes: torch.Tensor) -> None:
        """Store in DecoderTrace's shape ``[B, Q, H, levels, max points, (2)]``; levels with fewer points are padded
        with the box centre at weight 0."""
        b, q, heads, _ = weights.shape
        levels, most = len(self.num_points), max(self.num_points)
        loc = reference_boxes[:, :, None, None, None, :2].expand(b, q, heads, levels, most, 2).clone()
        wts = weights.new_zeros(b, q, heads, levels, most)
        start = 0
        for lvl, p in enumerate(self.num_points):
            loc[:, :, :, lvl, :p] = locations[:, :, :, start : start + p]
            wts[:, :, :, lvl, :p] = weights[:, :, :, start : start + p]
            start += p
        self.trace.sampling_locations.append(loc.detach())
        self.trace.attention_weights.append(wts.detach())


class Gate(nn.Module):
    """LayerNorm(g1·x1 + g2·x2) with (g1, g2) = sigmoid(Linear([x1, x2])); starts at g1 = g2 = 0.5."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(2 * dim, 2 * dim)
        self.norm = nn.LayerNorm(dim)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        g1, g2 = torch.sigmoid(self.gate(torch.cat([x1, x2], dim=-1))).chunk(2, dim=-1)
        return self.norm(g1 * x1 + g2 * x2)


class DecoderLayer(nn.Module):
    """Self-attention (q = k = tgt + pos) → add & norm1 → deformable cross-attention (query = tgt + pos) → gate →
    FFN → add → clamp to the float16 range → norm3."""

    def __init__(
        self, dim: int, num_heads: int, ffn_dim: int, num_points: list[int], dropout: float = 0.0, act: str = "relu"
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = DeformableAttention(dim, num_heads, num_points)
        self.gateway = Gate(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm3 = nn.LayerNorm(dim)
        self.act = make_activation(act)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.xavier_uniform_(self.linear2.weight)

    def forward(self, tgt, ref_boxes, memory, spatial_shapes, pos, attn_mask=None) -> torch.Tensor:
        qk = tgt + pos
        attn = self.self_attn(qk, qk, tgt, attn_mask=attn_mask, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout(attn))
        cross = self.cross_attn(tgt + pos, ref_boxes, memory, spatial_shapes)
        tgt = self.gateway(tgt, self.dropout(cross))
        ffn = self.linear2(self.dropout(self.act(self.linear1(tgt))))
        return self.norm3((tgt + self.dropout(ffn)).clamp(min=-65504, max=65504))


class LQE(nn.Module):
    """Localisation-quality estimate added to every class logit: per edge the top-k bin probabilities and their
    mean (4·(k+1) features) → MLP → one scalar per query. Keys ``reg_conf.layers.{i}``."""

    def __init__(self, reg_max: int, k: int = 4, hidden_dim: int = 64, num_layers: int = 2, act: str = "relu"):
        super().__init__()
        self.k, self.reg_max = k, reg_max
        self.reg_conf = MLP(4 * (k + 1), hidden_dim, 1, num_layers, act)
        nn.init.zeros_(self.reg_conf.layers[-1].weight)
        nn.init.zeros_(self.reg_conf.layers[-1].bias)

    def forward(self, scores: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        b, q, _ = corners.shape
        prob = F.softmax(corners.reshape(b, q, 4, self.reg_max + 1), dim=-1)
        top = prob.topk(self.k, dim=-1).values
        stat = torch.cat([top, top.mean(dim=-1, keepdim=True)], dim=-1).reshape(b, q, -1)
        return scores + self.reg_conf(stat)


class TransformerDecoder(nn.Module):
    """Container of the decoder layers and their LQE heads (official key prefix ``decoder.decoder``)."""

    def __init__(self, num_layers: int, reg_max: int, act: str, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(act=act, **layer_kwargs) for _ in range(num_layers))
        self.lqe_layers = nn.ModuleList(LQE(reg_max, act=act) for _ in range(num_layers))


class DFineDecoder(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: list[int],
        hidden_dim: int = 256,
        num_queries: int = 300,
        num_layers: int = 6,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        num_points: list[int] | None = None,
        dropout: float = 0.0,
        eval_idx: int = -1,
        num_denoising: int = 100,
        reg_max: int = 32,
        reg_scale: float = 4.0,
        up: float = 0.5,
        act: str = "relu",
    ):
        super().__init__()
        num_points = list(num_points or [4] * len(in_channels))
        if len(num_points) != len(in_channels):
            raise ValueError(f"num_points needs one count per level ({len(in_channels)}), got {num_points}")
        if not -num_layers <= eval_idx < num_layers:
            raise ValueError(f"eval_idx {eval_idx} out of range for {num_layers} decoder layers")
        self.num_classes, self.hidden_dim, self.num_queries = num_classes, hidden_dim, num_queries
        self.num_layers, self.eval_idx, self.reg_max = num_layers, eval_idx % num_layers, reg_max
        self.input_proj = nn.ModuleList(
            nn.Identity()
            if c == hidden_dim
            else nn.Sequential(
                OrderedDict(conv=nn.Conv2d(c, hidden_dim, 1, bias=False), norm=nn.BatchNorm2d(hidden_dim))
            )
            for c in in_channels
        )
        self.decoder = TransformerDecoder(
            num_layers,
            reg_max,
            act,
            dim=hidden_dim,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_points=num_points,
            dropout=dropout,
        )
        # FDR constants, stored in checkpoints as non-trainable parameters (as the official model does)
        self.up = nn.Parameter(torch.tensor([float(up)]), requires_grad=False)
        self.reg_scale = nn.Parameter(torch.tensor([float(reg_scale)]), requires_grad=False)
        self.denoising_class_embed = (
            nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes) if num_denoising > 0 else None
        )
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2, act)
        self.enc_output = nn.Sequential(
            OrderedDict(proj=nn.Linear(hidden_dim, hidden_dim), norm=nn.LayerNorm(hidden_dim))
        )
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3, act)
        self.dec_score_head = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.pre_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3, act)
        self.dec_bbox_head = nn.ModuleList(
            MLP(hidden_dim, hidden_dim, 4 * (reg_max + 1), 3, act) for _ in range(num_layers)
        )
        self.register_buffer("project", None, persistent=False)  # W frozen by deploy(); else computed per forward
        self._anchor_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.trace: DecoderTrace | None = None  # set only while DFine.record_intermediates() is active
        self.reset_parameters()

    def reset_parameters(self) -> None:
        prior_bias = -math.log((1 - 0.01) / 0.01)
        for head in [self.enc_score_head, *self.dec_score_head]:
            nn.init.constant_(head.bias, prior_bias)
        for mlp in [self.enc_bbox_head, self.pre_bbox_head, *self.dec_bbox_head]:
            nn.init.zeros_(mlp.layers[-1].weight)
            nn.init.zeros_(mlp.layers[-1].bias)
        nn.init.xavier_uniform_(self.enc_output.proj.weight)
        for layer in self.query_pos_head.layers:
            nn.init.xavier_uniform_(layer.weight)

    # -- helpers -----------------------------------------------------------------------------------------------
    def weights_w(self) -> torch.Tensor:
        """The weighting function W (``reg_max + 1`` values)."""
        if self.project is not None:
            return self.project
        return weighting_function(self.reg_max, self.up, self.reg_scale)

    def freeze_weighting_function(self) -> None:
        self.project = weighting_function(self.reg_max, self.up, self.reg_scale).detach()

    def anchors(self, spatial_shapes: list[tuple[int, int]], device: torch.device, dtype: torch.dtype):
        key = (tuple(spatial_shapes), device, dtype)
        cached = self._anchor_cache.get(key)
        if cached is None:
            logits, valid = generate_anchors(spatial_shapes)
            cached = (logits.to(device, dtype), valid.to(device))
            self._anchor_cache[key] = cached
        return cached

    def flatten_memory(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        maps = [proj(f) for proj, f in zip(self.input_proj, feats)]
        shapes = [(int(m.shape[2]), int(m.shape[3])) for m in maps]
        memory = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)
        return memory, shapes

    def select_queries(self, memory: torch.Tensor, spatial_shapes: list[tuple[int, int]]):
        """Encoder head and top-Q tokens by best class logit → (detached content, box logits, top-Q class logits).

        Every token is scored without autograd; with gradients on, the Q picked tokens go through ``enc_output`` and
        the heads again (same values, and the backward pass skips the other tokens).
        """
        if memory.shape[1] < self.num_queries:
            raise DetkitError(
                f"the input gives {memory.shape[1]} feature tokens, fewer than the {self.num_queries} queries",
                hint="use a larger input size (imgsz) or fewer queries (model.num_queries=N)",
            )
        anchor_logits, valid = self.anchors(spatial_shapes, memory.device, memory.dtype)
        memory = valid.to(memory.dtype) * memory
        with torch.no_grad():
            all_memory = self.enc_output(memory)
            scores = self.enc_score_head(all_memory).max(-1).values
        topk = scores.topk(self.num_queries, dim=1).indices[..., None]  # [B, Q, 1]
        if self.trace is not None:
            self.trace.spatial_shapes = list(spatial_shapes)
            self.trace.query_index = topk[..., 0].detach()
            self.trace.token_scores = scores.detach()
        if torch.is_grad_enabled():
            output_memory = self.enc_output(memory.gather(1, topk.expand(-1, -1, memory.shape[-1])))
        else:
            output_memory = all_memory.gather(1, topk.expand(-1, -1, all_memory.shape[-1]))
        topk_logits = self.enc_score_head(output_memory)
        anchors = anchor_logits.expand(memory.shape[0], -1, -1).gather(1, topk.expand(-1, -1, 4))
        ref_unact = self.enc_bbox_head(output_memory) + anchors
        return output_memory.detach(), ref_unact, topk_logits

    # -- forward -----------------------------------------------------------------------------------------------
    def forward(self, feats: list[torch.Tensor], dn: DenoisingGroup | None = None) -> dict:
        memory, shapes = self.flatten_memory(feats)
        content, ref_unact, enc_topk_logits = self.select_queries(memory, shapes)
        enc_topk_boxes = ref_unact.sigmoid()
        ref_unact = ref_unact.detach()
        attn_mask = None
        if dn is not None:
            content = torch.cat([self.denoising_class_embed(dn.labels), content], dim=1)
            ref_unact = torch.cat([dn.ref_unact.to(ref_unact.dtype), ref_unact], dim=1)
            attn_mask = dn.attn_mask

        project = self.weights_w()
        last = self.num_layers - 1 if self.training else self.eval_idx
        tgt, ref = content, ref_unact.sigmoid()
        tgt_detached: torch.Tensor | float = 0.0
        corners_prev: torch.Tensor | float = 0.0
        logits, boxes, corners_all = [], [], []
        for i, layer in enumerate(self.decoder.layers[: last + 1]):
            if self.trace is not None:
                self.trace.reference_boxes.append(ref.detach())
            pos = self.query_pos_head(ref).clamp(min=-10, max=10)
            tgt = layer(tgt, ref, memory, shapes, pos, attn_mask)
            if i == 0:
                pre_boxes = torch.sigmoid(self.pre_bbox_head(tgt) + inverse_sigmoid(ref))
                pre_logits = self.dec_score_head[0](tgt) if self.training else None
                initial = pre_boxes.detach()  # B0: the anchor of every layer's distances
            corners = self.dec_bbox_head[i](tgt + tgt_detached) + corners_prev
            box = distance2bbox(initial, integral(corners, project), self.reg_scale)
            if self.training or i == last:
                logits.append(self.decoder.lqe_layers[i](self.dec_score_head[i](tgt), corners))
                boxes.append(box)
                corners_all.append(corners)
            corners_prev, ref, tgt_detached = corners, box.detach(), tgt.detach()

        if not self.training:
            return {"logits": logits[-1], "boxes": boxes[-1]}
        return self._train_outputs(
            logits, boxes, corners_all, initial, pre_logits, pre_boxes, enc_topk_logits, enc_topk_boxes, dn
        )

    def _train_outputs(self, logits, boxes, corners, initial, pre_logits, pre_boxes, enc_logits, enc_boxes, dn):
        n = dn.num_split[0] if dn is not None else 0

        def layers(part: slice) -> list[dict]:
            outs = [
                {"logits": lg[:, part], "boxes": bx[:, part], "corners": cr[:, part], "ref_points": initial[:, part]}
                for lg, bx, cr in zip(logits, boxes, corners)
            ]
            for o in outs:
                o["teacher_corners"], o["teacher_logits"] = outs[-1]["corners"], outs[-1]["logits"]
            return outs

        match = layers(slice(n, None))
        out = {
            "logits": match[-1]["logits"],
            "boxes": match[-1]["boxes"],
            "corners": match[-1]["corners"],
            "ref_points": match[-1]["ref_points"],
            "up": self.up,
            "reg_scale": self.reg_scale,
            "aux_outputs": match[:-1],
            "pre_outputs": {"logits": pre_logits[:, n:], "boxes": pre_boxes[:, n:]},
            "enc_outputs": [{"logits": enc_logits, "boxes": enc_boxes}],
            "dn_outputs": None,
            "dn_pre_outputs": None,
            "dn_meta": None,
        }
        if dn is not None:
            out["dn_outputs"] = layers(slice(0, n))
            out["dn_pre_outputs"] = {"logits": pre_logits[:, :n], "boxes": pre_boxes[:, :n]}
            out["dn_meta"] = dn.meta()
        return out
