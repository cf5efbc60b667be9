"""D-FINE hybrid encoder: input projection, AIFI on the coarsest map, CCFF with RepNCSPELAN4 blocks and SCDown.

Differences from RT-DETR's encoder (docs/dfine.md §3): the fusion blocks are RepNCSPELAN4, the lateral 1×1 convs
have no activation, and the bottom-up downsampling is SCDown (1×1 ConvBN then depthwise 3×3 stride-2 ConvBN).
Key names follow the official checkpoints (``fpn_blocks.{i}.cv1``, ``cv2.0`` (CSP layer), ``cv2.1``, ``cv3.0``,
``cv3.1``, ``cv4``; ``downsample_convs.{i}.0.cv1/cv2``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from detkit.models.layers import make_activation
from detkit.models.rtdetr.encoder import AIFI, RepVggBlock, sincos_position_embedding


class ConvNorm(nn.Module):
    """conv (no bias) → BN → optional activation; :meth:`fuse` folds the BN into the conv for deployment.

    Keys ``conv``, ``norm``. Like :class:`RepVggBlock`, the folded kernel lives in non-persistent buffers used in
    eval mode only, so checkpoints always hold the training form.
    """

    def __init__(self, ch_in: int, ch_out: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None):
        super().__init__()
        self.conv = nn.Conv2d(ch_in, ch_out, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(ch_out)
        self.act = make_activation(act)
        self.register_buffer("fused_weight", None, persistent=False)
        self.register_buffer("fused_bias", None, persistent=False)

    @property
    def is_fused(self) -> bool:
        return self.fused_weight is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_weight is not None and not self.training:
            c = self.conv
            return self.act(F.conv2d(x, self.fused_weight, self.fused_bias, c.stride, c.padding, c.dilation, c.groups))
        return self.act(self.norm(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        bn = self.norm
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.fused_weight = self.conv.weight * scale[:, None, None, None]
        self.fused_bias = bn.bias - bn.running_mean * scale

    def unfuse(self) -> None:
        self.fused_weight = None
        self.fused_bias = None


class CSPLayer(nn.Module):
    """conv3(bottlenecks(conv1(x)) + conv2(x)); RepVGG bottlenecks; conv3 is an identity at equal widths."""

    def __init__(self, ch_in: int, ch_out: int, num_blocks: int, expansion: float = 1.0, act: str = "silu"):
        super().__init__()
        hidden = int(ch_out * expansion)
        self.conv1 = ConvNorm(ch_in, hidden, 1, act=act)
        self.conv2 = ConvNorm(ch_in, hidden, 1, act=act)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, hidden, act=act) for _ in range(num_blocks)])
        self.conv3 = ConvNorm(hidden, ch_out, 1, act=act) if hidden != ch_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class RepNCSPELAN4(nn.Module):
    """1×1 conv to 2c, split in halves; two chained (CSP layer → 3×3 conv) branches on the second half; concat of
    both halves and both branch outputs → 1×1 conv to ``ch_out``. Every conv is followed by ``act``."""

    def __init__(self, ch_in: int, ch_out: int, ch_mid: int, ch_branch: int, num_blocks: int, act: str = "silu"):
        super().__init__()
        self.half = ch_mid // 2
        self.cv1 = ConvNorm(ch_in, ch_mid, 1, act=act)
        self.cv2 = nn.Sequential(
            CSPLayer(ch_mid // 2, ch_branch, num_blocks, act=act), ConvNorm(ch_branch, ch_branch, 3, act=act)
        )
        self.cv3 = nn.Sequential(
            CSPLayer(ch_branch, ch_branch, num_blocks, act=act), ConvNorm(ch_branch, ch_branch, 3, act=act)
        )
        self.cv4 = ConvNorm(ch_mid + 2 * ch_branch, ch_out, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).split((self.half, self.half), dim=1))
        parts.append(self.cv2(parts[-1]))
        parts.append(self.cv3(parts[-1]))
        return self.cv4(torch.cat(parts, dim=1))


class SCDown(nn.Module):
    """1×1 ConvBN then depthwise k×k stride-s ConvBN, no activations."""

    def __init__(self, ch_in: int, ch_out: int, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.cv1 = ConvNorm(ch_in, ch_out, 1)
        self.cv2 = ConvNorm(ch_out, ch_out, kernel, stride, groups=ch_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


class DFineHybridEncoder(nn.Module):
    def __init__(
        self,
        in_channels: list[int],
        hidden_dim: int = 256,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        dropout: float = 0.0,
        num_encoder_layers: int = 1,
        expansion: float = 1.0,
        depth_mult: float = 1.0,
        pe_temperature: float = 10000.0,
    ):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.pe_temperature = pe_temperature
        self.input_proj = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(c, hidden_dim, 1, bias=False), norm=nn.BatchNorm2d(hidden_dim)))
            for c in in_channels
        )
        # AIFI runs on the coarsest level only, as in every released model
        self.encoder = nn.ModuleList(
            [AIFI(num_encoder_layers, dim=hidden_dim, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout)]
        )
        n = len(in_channels) - 1
        blocks = round(3 * depth_mult)
        branch = round(expansion * hidden_dim // 2)

        def elan() -> RepNCSPELAN4:
            return RepNCSPELAN4(2 * hidden_dim, hidden_dim, 2 * hidden_dim, branch, blocks)

        self.lateral_convs = nn.ModuleList(ConvNorm(hidden_dim, hidden_dim, 1) for _ in range(n))
        self.fpn_blocks = nn.ModuleList(elan() for _ in range(n))
        self.downsample_convs = nn.ModuleList(nn.Sequential(SCDown(hidden_dim, hidden_dim, 3, 2)) for _ in range(n))
        self.pan_blocks = nn.ModuleList(elan() for _ in range(n))
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    def position_embedding(self, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (h, w, device, dtype)
        pos = self._pos_cache.get(key)
        if pos is None:
            pos = sincos_position_embedding(h, w, self.hidden_dim, self.pe_temperature).to(device, dtype)
            self._pos_cache[key] = pos
        return pos

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        proj = [p(f) for p, f in zip(self.input_proj, feats)]
        top = proj[-1]
        b, c, h, w = top.shape
        pos = self.position_embedding(h, w, top.device, top.dtype)
        tokens = self.encoder[0](top.flatten(2).transpose(1, 2), pos.unsqueeze(0))
        proj[-1] = tokens.transpose(1, 2).reshape(b, c, h, w)

        inner = [proj[-1]]  # top-down: the lateral conv output replaces the coarser map for the bottom-up pass
        for i, (lateral, fpn) in enumerate(zip(self.lateral_convs, self.fpn_blocks)):
            inner[0] = lateral(inner[0])
            up = F.interpolate(inner[0], scale_factor=2.0, mode="nearest")
            inner.insert(0, fpn(torch.cat([up, proj[-2 - i]], dim=1)))
        outs = [inner[0]]  # bottom-up
        for i, (down, pan) in enumerate(zip(self.downsample_convs, self.pan_blocks)):
            outs.append(pan(torch.cat([down(outs[-1]), inner[i + 1]], dim=1)))
        return outs
