"""``infer_model_config``: the RT-DETR variant a state dict was built for, read from its tensor shapes.

Works on every layout :mod:`detkit.models.rtdetr.convert_weights` reads (detkit, official v1/v2, Hugging Face), so bare
foreign weights need no recipe. What the shapes give: backbone depth (blocks per stage, basic vs bottleneck
blocks), encoder width, AIFI layers and feed-forward width, CSPRep expansion and blocks (``depth_mult``), decoder
width, layers and feed-forward width, class count, whether contrastive denoising was trained, and the query
position head (2 layers: RT-DETR's; 3 layers: ``query_pos_method: as_reg``).

What they do not give, and the values taken (those of every released RT-DETR): attention heads (8; only heads ×
points shows in the deformable attention, and a v2 file's points-scale buffer, official or Hugging Face, gives
the points per level), ``num_queries`` (300: query selection has no weights), ``eval_idx`` (last layer),
``pe_temperature`` (10000), bilinear sampling (``cross_attn_method`` leaves no trace in the weights), the
activation (ReLU; SiLU with the 3-layer query position head, which only DEIM's RT-DETRv2 models have,
docs/rt-detr.md §8.5) and the training-only noise settings. The training input size shows only in an official v2
file's anchor buffer
(:func:`infer_imgsz`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from pydantic import ValidationError

from detkit.errors import DetkitError
from detkit.models.rtdetr.backbone import BLOCKS_PER_STAGE
from detkit.models.rtdetr.config import ModelConfig
from detkit.models.rtdetr.convert_weights import to_detkit, unwrap_official

DEFAULT_HEADS = 8
DEFAULT_QUERIES = 300
DEFAULT_DENOISING = 100


def _indices(sd: Mapping[str, torch.Tensor], pattern: str) -> set[int]:
    rx = re.compile(pattern)
    return {int(m[1]) for k in sd if (m := rx.match(k))}


def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = _indices(sd, pattern)
    return max(found) + 1 if found else 0


def _depth(sd: Mapping[str, torch.Tensor]) -> int:
    counts = [_count(sd, rf"^backbone\.res_layers\.{s}\.blocks\.(\d+)\.") for s in range(4)]
    bottleneck = any(re.match(r"^backbone\.res_layers\.\d+\.blocks\.\d+\.branch2c\.", k) for k in sd)
    for depth, blocks in BLOCKS_PER_STAGE.items():
        if blocks == counts and (depth >= 50) == bottleneck:
            return depth
    kind = "bottleneck" if bottleneck else "basic"
    raise DetkitError(
        f"backbone has {counts} {kind} blocks per stage: not a PResNet-vd of depth 18, 34, 50 or 101",
        hint="detkit builds RT-DETR with a PResNet-vd backbone only",
    )


def _heads_and_points(
    samples: int, points: list[int] | None, levels: int, dims: tuple[int, ...]
) -> tuple[int, int | list[int]]:
    """Heads and points per level from the heads × Σ points rows of ``attention_weights``; ``points`` is what a
    v2 points-scale buffer says (None without one). Equal counts on every level are given as one int."""
    if points:
        heads = max(1, samples // sum(points))
        return heads, points[0] if len(set(points)) == 1 else points
    for heads in (DEFAULT_HEADS, 4, 2, 1):  # the released models use 8; narrower custom widths may need fewer
        if samples % (heads * levels) == 0 and all(d % heads == 0 for d in dims):
            return heads, samples // (heads * levels)
    return 1, max(1, samples // levels)


def infer_model_config(state_dict: Mapping[str, torch.Tensor]) -> ModelConfig:
    """The ``ModelConfig`` of the RT-DETR that ``state_dict`` (any supported layout) belongs to.

    Raises a DetkitError naming what is missing when the tensors are not an RT-DETR with a PResNet-vd backbone.
    """
    conv = to_detkit(unwrap_official(state_dict))
    sd = conv.state_dict

    def shape(key: str) -> tuple[int, ...]:
        t = sd.get(key)
        if not isinstance(t, torch.Tensor):
            raise DetkitError(
                f"weights have no {key}: not an RT-DETR state dict",
                hint="detkit reads detkit, official RT-DETR v1/v2 and Hugging Face RT-DETR weights",
            )
        return tuple(t.shape)

    depth = _depth(sd)
    encoder_dim = shape("encoder.input_proj.0.conv.weight")[0]
    csp_hidden = shape("encoder.fpn_blocks.0.conv1.conv.weight")[0]
    expansion = csp_hidden / encoder_dim
    if int(encoder_dim * expansion) != csp_hidden:  # int() must give the width back despite float rounding
        expansion = math.nextafter(expansion, math.inf)
    blocks = _count(sd, r"^encoder\.fpn_blocks\.0\.bottlenecks\.(\d+)\.")
    hidden_dim = shape("decoder.enc_output.proj.weight")[0]
    levels = _count(sd, r"^decoder\.input_proj\.(\d+)\.")
    if levels != 3:
        raise DetkitError(f"decoder reads {levels} feature levels; detkit's RT-DETR uses 3 (strides 8, 16, 32)")
    samples = shape("decoder.decoder.layers.0.cross_attn.attention_weights.weight")[0]
    heads, points = _heads_and_points(samples, conv.points, levels, (encoder_dim, hidden_dim))
    as_reg = _count(sd, r"^decoder\.query_pos_head\.layers\.(\d+)\.") == 3
    try:
        cfg = ModelConfig(
            depth=depth,
            freeze_stem=depth >= 50,  # the official recipes' choice (training only)
            frozen_bn=depth >= 50,
            encoder_dim=encoder_dim,
            encoder_ffn_dim=shape("encoder.encoder.0.layers.0.linear1.weight")[0],
            encoder_layers=max(1, _count(sd, r"^encoder\.encoder\.0\.layers\.(\d+)\.")),
            expansion=expansion,
            depth_mult=blocks / 3,
            hidden_dim=hidden_dim,
            num_heads=heads,
            num_queries=DEFAULT_QUERIES,
            decoder_layers=max(1, _count(sd, r"^decoder\.decoder\.layers\.(\d+)\.")),
            decoder_ffn_dim=shape("decoder.decoder.layers.0.linear1.weight")[0],
            num_points=points,
            query_pos_method="as_reg" if as_reg else "default",
            activation="silu" if as_reg else "relu",
            num_denoising=DEFAULT_DENOISING if "decoder.denoising_class_embed.weight" in sd else 0,
        )
    except ValidationError as e:  # shapes no RT-DETR variant can have
        raise DetkitError(f"weights' shapes give no valid RT-DETR configuration ({e.errors()[0]['msg']})") from None
    return cfg


def class_count(state_dict: Mapping[str, torch.Tensor]) -> int:
    """How many classes the weights' class head predicts (any supported layout)."""
    head = to_detkit(unwrap_official(state_dict)).state_dict.get("decoder.enc_score_head.weight")
    if not isinstance(head, torch.Tensor):
        raise DetkitError("weights have no class head (decoder.enc_score_head): not an RT-DETR state dict")
    return int(head.shape[0])


def infer_imgsz(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """The square training size an official v2 file stores in its anchor buffer (else None)."""
    anchors = unwrap_official(state_dict).get("decoder.anchors")
    if not isinstance(anchors, torch.Tensor) or anchors.dim() != 3:
        return None
    side = 32 * math.isqrt(anchors.shape[1] // 21)  # (s/8)² + (s/16)² + (s/32)² = 21 (s/32)²
    return side if side > 0 and 21 * (side // 32) ** 2 == anchors.shape[1] else None
