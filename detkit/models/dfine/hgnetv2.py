"""HGNetv2 backbone (B0/B2/B4/B5) as D-FINE uses it (docs/dfine.md §2).

State-dict keys follow the official checkpoints: ``stem.stem{1,2a,2b,3,4}.{conv,bn,lab}``,
``stages.{i}.downsample.{conv,bn}``, ``stages.{i}.blocks.{j}.layers.{k}[.conv1|.conv2].{conv,bn,lab}`` and
``stages.{i}.blocks.{j}.aggregation.{0,1}.{conv,bn,lab}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detkit.models.layers import freeze_batch_norms


class LearnableAffine(nn.Module):
    """y = scale·x + bias with two scalar parameters (keys ``scale``, ``bias``)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias


class ConvBNAct(nn.Module):
    """conv (no bias, 'same' padding) → BN → ReLU (when ``act``) → learnable affine (when ``act`` and ``lab``)."""

    def __init__(
        self,
        ch_in: int,
        ch_out: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
        lab: bool = False,
    ):
        super().__init__()
        self.conv = nn.Conv2d(ch_in, ch_out, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(ch_out)
        self.act = nn.ReLU() if act else nn.Identity()
        self.lab = LearnableAffine() if act and lab else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lab(self.act(self.bn(self.conv(x))))


class LightConvBNAct(nn.Module):
    """1×1 ConvBN without activation, then a depthwise k×k ConvBNAct."""

    def __init__(self, ch_in: int, ch_out: int, kernel: int, lab: bool):
        super().__init__()
        self.conv1 = ConvBNAct(ch_in, ch_out, 1, act=False, lab=lab)
        self.conv2 = ConvBNAct(ch_out, ch_out, kernel, groups=ch_out, act=True, lab=lab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Module):
    """Stride-4 stem: two parallel stride-2 paths (2×2 convs / 2×2 max-pool) on the stem1 output, concatenated."""

    def __init__(self, ch_in: int, ch_mid: int, ch_out: int, lab: bool):
        super().__init__()
        self.stem1 = ConvBNAct(ch_in, ch_mid, 3, 2, lab=lab)
        self.stem2a = ConvBNAct(ch_mid, ch_mid // 2, 2, 1, lab=lab)
        self.stem2b = ConvBNAct(ch_mid // 2, ch_mid, 2, 1, lab=lab)
        self.stem3 = ConvBNAct(ch_mid * 2, ch_mid, 3, 2, lab=lab)
        self.stem4 = ConvBNAct(ch_mid, ch_out, 1, 1, lab=lab)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.stem1(x), (0, 1, 0, 1))
        a = self.stem2b(F.pad(self.stem2a(x), (0, 1, 0, 1)))
        return self.stem4(self.stem3(torch.cat([self.pool(x), a], dim=1)))


class HGBlock(nn.Module):
    """``layers`` sequential convs; input and every output concatenated → 1×1 squeeze (out/2) → 1×1 to ``out``."""

    def __init__(
        self, ch_in: int, ch_mid: int, ch_out: int, layers: int, kernel: int, light: bool, lab: bool, residual: bool
    ):
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList(
            LightConvBNAct(ch_in if i == 0 else ch_mid, ch_mid, kernel, lab)
            if light
            else ConvBNAct(ch_in if i == 0 else ch_mid, ch_mid, kernel, lab=lab)
            for i in range(layers)
        )
        total = ch_in + layers * ch_mid
        self.aggregation = nn.Sequential(
            ConvBNAct(total, ch_out // 2, 1, lab=lab), ConvBNAct(ch_out // 2, ch_out, 1, lab=lab)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            outs.append(y)
        y = self.aggregation(torch.cat(outs, dim=1))
        return y + x if self.residual else y


class HGStage(nn.Module):
    def __init__(
        self,
        ch_in: int,
        ch_mid: int,
        ch_out: int,
        blocks: int,
        layers: int,
        kernel: int,
        light: bool,
        downsample: bool,
        lab: bool,
    ):
        super().__init__()
        self.downsample = ConvBNAct(ch_in, ch_in, 3, 2, groups=ch_in, act=False) if downsample else nn.Identity()
        self.blocks = nn.Sequential(
            *[
                HGBlock(ch_in if j == 0 else ch_out, ch_mid, ch_out, layers, kernel, light, lab, residual=j > 0)
                for j in range(blocks)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class HGNetv2(nn.Module):
    """Returns the maps of ``return_stages`` (stage s has stride 2^(s+1)): e.g. [2, 3, 4] → strides 8, 16, 32."""

    def __init__(
        self,
        stem: tuple[int, int, int],
        stages: tuple[tuple, ...],
        return_stages: list[int],
        use_lab: bool = False,
        freeze_stem: bool = False,
        frozen_bn: bool = False,
    ):
        super().__init__()
        self.return_stages = list(return_stages)
        self.stem = StemBlock(*stem, lab=use_lab)
        self.stages = nn.ModuleList(
            HGStage(c_in, c_mid, c_out, blocks, layers, kernel, light, down, use_lab)
            for c_in, c_mid, c_out, blocks, layers, kernel, light, down in stages
        )
        self.out_channels = [stages[s - 1][2] for s in self.return_stages]
        self.out_strides = [2 ** (s + 1) for s in self.return_stages]
        if freeze_stem:
            for p in self.stem.parameters():
                p.requires_grad_(False)
        if frozen_bn:
            freeze_batch_norms(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for s, stage in enumerate(self.stages[: self.return_stages[-1]], start=1):
            x = stage(x)
            if s in self.return_stages:
                outs.append(x)
        return outs
