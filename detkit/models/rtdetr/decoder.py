"""RT-DETR decoder: memory from the encoder maps, query selection, deformable decoder layers, box refinement.

Key names follow the official checkpoints: ``input_proj``, ``decoder.layers.{i}``, ``query_pos_head``,
``denoising_class_embed``, ``enc_output.proj/norm``, ``enc_score_head``, ``enc_bbox_head``, ``dec_score_head.{i}``,
``dec_bbox_head.{i}``.

RT-DETRv2 and DEIM options (docs/rt-detr.md §8): sampling points per level, discrete sampling, SiLU in the FFN and
the MLP heads, and the 3-layer ``as_reg`` query position head.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from detkit.errors import DetkitError
from detkit.models.deformable_attention import MSDeformableAttention
from detkit.models.denoising import DenoisingGroup
from detkit.models.detr_base import DecoderTrace
from detkit.models.layers import MLP, ConvNormLayer, inverse_sigmoid, make_activation

ANCHOR_EPS = 1e-2
QUERY_POS_METHODS = ("default", "as_reg")


def generate_anchors(
    spatial_shapes: list[tuple[int, int]], base_size: float = 0.05, eps: float = ANCHOR_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchors in logit space ``[1, S, 4]`` (+inf where invalid) and the validity mask ``[1, S, 1]``.

    Level l with an h×w grid has centres ((x+0.5)/w, (y+0.5)/h), row-major, and size base·2^l. An anchor is
    valid when all four coordinates lie strictly inside (eps, 1 − eps).
    """
    anchors = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
        )
        cxcy = torch.stack([(xs + 0.5) / w, (ys + 0.5) / h], dim=-1).reshape(-1, 2)
        wh = torch.full_like(cxcy, base_size * 2.0**lvl)
        anchors.append(torch.cat([cxcy, wh], dim=-1))
    anchors = torch.cat(anchors)[None]
    valid = ((anchors > eps) & (anchors < 1 - eps)).all(-1, keepdim=True)
    logits = torch.log(anchors / (1 - anchors))
    logits = torch.where(valid, logits, torch.full_like(logits, math.inf))
    return logits, valid


class DecoderLayer(nn.Module):
    """Post-norm: self-attention (q = k = tgt + pos), deformable cross-attention (query = tgt + pos), FFN
    (``activation`` between its two linears)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        num_levels: int,
        num_points: int | Sequence[int],
        dropout: float = 0.0,
        cross_attn_method: str = "default",
        activation: str = "relu",
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformableAttention(dim, num_heads, num_levels, num_points, method=cross_attn_method)
        self.norm2 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.activation = make_activation(activation)

    def forward(
        self,
        tgt: torch.Tensor,
        ref_boxes: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        pos: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        qk = tgt + pos
        attn = self.self_attn(qk, qk, tgt, attn_mask=attn_mask, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout(attn))
        cross = self.cross_attn(tgt + pos, ref_boxes, memory, spatial_shapes)
        tgt = self.norm2(tgt + self.dropout(cross))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout(ffn))


class TransformerDecoder(nn.Module):
    def __init__(self, num_layers: int, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(**layer_kwargs) for _ in range(num_layers))


class RTDETRDecoder(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: list[int],
        hidden_dim: int = 256,
        num_queries: int = 300,
        num_layers: int = 6,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        num_points: int | Sequence[int] = 4,
        dropout: float = 0.0,
        eval_idx: int = -1,
        num_denoising: int = 100,
        cross_attn_method: str = "default",
        activation: str = "relu",
        query_pos_method: str = "default",
    ):
        super().__init__()
        if not -num_layers <= eval_idx < num_layers:
            raise ValueError(f"eval_idx {eval_idx} out of range for {num_layers} decoder layers")
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.num_layers = num_layers
        self.eval_idx = eval_idx % num_layers
        num_levels = len(in_channels)
        self.input_proj = nn.ModuleList(ConvNormLayer(c, hidden_dim, 1, 1) for c in in_channels)
        self.decoder = TransformerDecoder(
            num_layers,
            dim=hidden_dim,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_levels=num_levels,
            num_points=num_points,
            dropout=dropout,
            cross_attn_method=cross_attn_method,
            activation=activation,
        )
        self.denoising_class_embed = (
            nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes) if num_denoising > 0 else None
        )
        if query_pos_method not in QUERY_POS_METHODS:
            raise ValueError(
                f"query_pos_method must be one of {', '.join(QUERY_POS_METHODS)}, got {query_pos_method!r}"
            )
        # default: 4 → 2d → d (RT-DETR); as_reg: 4 → d → d → d, shaped like the box heads (DEIM's RT-DETRv2)
        self.query_pos_head = (
            MLP(4, hidden_dim, hidden_dim, 3, act=activation)
            if query_pos_method == "as_reg"
            else MLP(4, 2 * hidden_dim, hidden_dim, 2, act=activation)
        )
        self.enc_output = nn.Sequential(
            OrderedDict(proj=nn.Linear(hidden_dim, hidden_dim), norm=nn.LayerNorm(hidden_dim))
        )
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3, act=activation)
        self.dec_score_head = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.dec_bbox_head = nn.ModuleList(MLP(hidden_dim, hidden_dim, 4, 3, act=activation) for _ in range(num_layers))
        self._anchor_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.trace: DecoderTrace | None = None  # set only while RTDETR.record_intermediates() is active
        self.reset_parameters()

    def reset_parameters(self) -> None:
        prior_bias = -math.log((1 - 0.01) / 0.01)
        for head in [self.enc_score_head, *self.dec_score_head]:
            nn.init.constant_(head.bias, prior_bias)
        for mlp in [self.enc_bbox_head, *self.dec_bbox_head]:
            nn.init.zeros_(mlp.layers[-1].weight)
            nn.init.zeros_(mlp.layers[-1].bias)
        nn.init.xavier_uniform_(self.enc_output.proj.weight)
        for layer in self.query_pos_head.layers:
            nn.init.xavier_uniform_(layer.weight)
        for layer in self.decoder.layers:
            nn.init.xavier_uniform_(layer.linear1.weight)
            nn.init.xavier_uniform_(layer.linear2.weight)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj.conv.weight)

    # -- helpers -----------------------------------------------------------------------------------------------
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
        """Encoder head, top-Q tokens by best class logit. Returns detached content and references.

        Only the top-Q tokens ever reach a loss, so the heads' graph is built for those alone: every token is
        scored without autograd, and with gradients on, the Q picked tokens go through ``enc_output`` and the
        heads again (same values; the box head and the backward pass skip the other tokens — at 640 px that is
        8,400 tokens per image against 300).
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
        attn_mask = None
        if dn is not None:
            dn_content = self.denoising_class_embed(dn.labels)
            content = torch.cat([dn_content, content], dim=1)
            ref_unact = torch.cat([dn.ref_unact.to(ref_unact.dtype), ref_unact], dim=1)
            attn_mask = dn.attn_mask

        layers = self.decoder.layers
        tgt = content
        ref = ref_unact.detach().sigmoid()
        if not self.training:
            for i, layer in enumerate(layers[: self.eval_idx + 1]):
                if self.trace is not None:
                    self.trace.reference_boxes.append(ref.detach())
                tgt = layer(tgt, ref, memory, shapes, self.query_pos_head(ref), attn_mask)
                ref = (self.dec_bbox_head[i](tgt) + inverse_sigmoid(ref)).sigmoid()
            return {"logits": self.dec_score_head[self.eval_idx](tgt), "boxes": ref}

        all_logits, all_boxes = [], []
        prev_box = ref
        for i, layer in enumerate(layers):
            tgt = layer(tgt, ref, memory, shapes, self.query_pos_head(ref), attn_mask)
            delta = self.dec_bbox_head[i](tgt)
            box = (delta + inverse_sigmoid(ref)).sigmoid()
            # "look forward twice": the supervised box of layer i>0 refines the non-detached previous box
            all_boxes.append(box if i == 0 else (delta + inverse_sigmoid(prev_box)).sigmoid())
            all_logits.append(self.dec_score_head[i](tgt))
            prev_box = box
            ref = box.detach()

        num_dn = dn.num_split[0] if dn is not None else 0
        outs = [{"logits": lg[:, num_dn:], "boxes": bx[:, num_dn:]} for lg, bx in zip(all_logits, all_boxes)]
        return {
            "logits": outs[-1]["logits"],
            "boxes": outs[-1]["boxes"],
            "aux_outputs": outs[:-1],
            "enc_outputs": [{"logits": enc_topk_logits, "boxes": enc_topk_boxes}],
            "dn_outputs": (
                [{"logits": lg[:, :num_dn], "boxes": bx[:, :num_dn]} for lg, bx in zip(all_logits, all_boxes)]
                if dn is not None
                else None
            ),
            "dn_meta": dn.meta() if dn is not None else None,
        }
