"""Efficient hybrid encoder: input projection, AIFI on the stride-32 map, CCFF (top-down FPN + bottom-up PAN).

Key names follow the official checkpoints (``input_proj.{i}.conv/norm``, ``encoder.0.layers.0.self_attn``,
``lateral_convs``, ``fpn_blocks``, ``downsample_convs``, ``pan_blocks``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detkit.models.layers import ConvNormLayer, make_activation


class RepVggBlock(nn.Module):
    """SiLU(BN(conv3×3(x)) + BN(conv1×1(x))); :meth:`fuse` folds both branches into one biased 3×3 conv.

    The fused kernel lives in non-persistent buffers: it follows ``.to()`` but never enters a checkpoint, so
    checkpoints always hold the training form.
    """

    def __init__(self, ch_in: int, ch_out: int, act: str = "silu"):
        super().__init__()
        self.conv1 = ConvNormLayer(ch_in, ch_out, 3, 1)
        self.conv2 = ConvNormLayer(ch_in, ch_out, 1, 1)
        self.act = make_activation(act)
        self.register_buffer("fused_weight", None, persistent=False)
        self.register_buffer("fused_bias", None, persistent=False)

    @property
    def is_fused(self) -> bool:
        return self.fused_weight is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_weight is not None and not self.training:  # training always uses (and updates) the branches
            return self.act(F.conv2d(x, self.fused_weight, self.fused_bias, padding=1))
        return self.act(self.conv1(x) + self.conv2(x))

    @staticmethod
    def _fold(branch: ConvNormLayer) -> tuple[torch.Tensor, torch.Tensor]:
        bn = branch.norm
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return branch.conv.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale

    @torch.no_grad()
    def fuse(self) -> None:
        """Deploy form: K = K3·γ/σ + pad(K1·γ/σ), b = b3 + b1, from the current weights and BN statistics
        (fuse again after changing them). Used in eval mode only."""
        k3, b3 = self._fold(self.conv1)
        k1, b1 = self._fold(self.conv2)
        self.fused_weight = k3 + F.pad(k1, [1, 1, 1, 1])
        self.fused_bias = b3 + b1

    def unfuse(self) -> None:
        self.fused_weight = None
        self.fused_bias = None


class CSPRepLayer(nn.Module):
    """conv3(bottlenecks(conv1(x)) + conv2(x)); conv3 is an identity when the hidden width equals the output."""

    def __init__(self, ch_in: int, ch_out: int, num_blocks: int = 3, expansion: float = 1.0, act: str = "silu"):
        super().__init__()
        hidden = int(ch_out * expansion)
        self.conv1 = ConvNormLayer(ch_in, hidden, 1, 1, act=act)
        self.conv2 = ConvNormLayer(ch_in, hidden, 1, 1, act=act)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, hidden, act=act) for _ in range(num_blocks)])
        self.conv3 = ConvNormLayer(hidden, ch_out, 1, 1, act=act) if hidden != ch_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class TransformerEncoderLayer(nn.Module):
    """Post-norm layer: q = k = src + pos, v = src; then FFN. Dropout is configurable (0 in every recipe)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0, act: str = "gelu"):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.act = make_activation(act)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        qk = src + pos
        attn = self.self_attn(qk, qk, src, need_weights=False)[0]
        src = self.norm1(src + self.dropout(attn))
        ffn = self.linear2(self.dropout(self.act(self.linear1(src))))
        return self.norm2(src + self.dropout(ffn))


class AIFI(nn.Module):
    """Stack of encoder layers over one flattened feature map (keys ``layers.{i}``)."""

    def __init__(self, num_layers: int, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(TransformerEncoderLayer(**layer_kwargs) for _ in range(num_layers))

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src


def sincos_position_embedding(h: int, w: int, dim: int, temperature: float) -> torch.Tensor:
    """``[h·w, dim]`` 2-D sin-cos embedding for a row-major token map: [sin(yω), cos(yω), sin(xω), cos(xω)].

    This is the official form on square maps and HF's form on every map (the official code mixes up axes on
    non-square maps; we use the geometric one). Computed in float64 for accuracy.
    """
    if dim % 4:
        raise ValueError(f"hidden dim must be divisible by 4 for the 2-D position embedding, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ay = ys.reshape(-1, 1) * omega
    ax = xs.reshape(-1, 1) * omega
    return torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1)


class HybridEncoder(nn.Module):
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
        self.input_proj = nn.ModuleList(ConvNormLayer(c, hidden_dim, 1, 1) for c in in_channels)
        # AIFI runs on the last (stride-32) level only, as in every released model
        self.encoder = nn.ModuleList(
            [AIFI(num_encoder_layers, dim=hidden_dim, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout)]
        )
        n = len(in_channels) - 1
        blocks = round(3 * depth_mult)
        self.lateral_convs = nn.ModuleList(ConvNormLayer(hidden_dim, hidden_dim, 1, 1, act="silu") for _ in range(n))
        self.fpn_blocks = nn.ModuleList(CSPRepLayer(2 * hidden_dim, hidden_dim, blocks, expansion) for _ in range(n))
        self.downsample_convs = nn.ModuleList(ConvNormLayer(hidden_dim, hidden_dim, 3, 2, act="silu") for _ in range(n))
        self.pan_blocks = nn.ModuleList(CSPRepLayer(2 * hidden_dim, hidden_dim, blocks, expansion) for _ in range(n))
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

        # top-down: lateral conv output replaces the coarser map for the bottom-up pass
        inner = [proj[-1]]
        for i, (lateral, fpn) in enumerate(zip(self.lateral_convs, self.fpn_blocks)):
            inner[0] = lateral(inner[0])
            up = F.interpolate(inner[0], scale_factor=2.0, mode="nearest")
            inner.insert(0, fpn(torch.cat([up, proj[-2 - i]], dim=1)))
        # bottom-up
        outs = [inner[0]]
        for i, (down, pan) in enumerate(zip(self.downsample_convs, self.pan_blocks)):
            outs.append(pan(torch.cat([down(outs[-1]), inner[i + 1]], dim=1)))
        return outs
