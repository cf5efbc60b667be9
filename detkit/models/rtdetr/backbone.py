"""PResNet-vd ("ResNet-vd", Paddle style): the RT-DETR backbone for depths 18, 34, 50 and 101.

Differences from torchvision's ResNet: a three-conv stem, a projection shortcut on the first block of *every*
stage, and on stride-2 shortcuts an average pool before a stride-1 1×1 conv ("vd" trick). State-dict keys follow
the official checkpoints (``conv1.conv1_1.conv.weight``, ``res_layers.{s}.blocks.{j}.branch2a...``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from detkit.models.layers import ConvNormLayer, freeze_batch_norms

BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
STAGE_WIDTHS = [64, 128, 256, 512]


def _shortcut(ch_in: int, ch_out: int, stride: int) -> nn.Module:
    if stride == 1:
        return ConvNormLayer(ch_in, ch_out, 1, 1)
    return nn.Sequential(
        OrderedDict(pool=nn.AvgPool2d(2, 2, 0, ceil_mode=True), conv=ConvNormLayer(ch_in, ch_out, 1, 1))
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, ch_in: int, width: int, stride: int, projection: bool):
        super().__init__()
        self.short = _shortcut(ch_in, width, stride) if projection else None
        self.branch2a = ConvNormLayer(ch_in, width, 3, stride, act="relu")
        self.branch2b = ConvNormLayer(width, width, 3, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.short is None else self.short(x)
        return self.act(self.branch2b(self.branch2a(x)) + identity)


class BottleNeck(nn.Module):
    expansion = 4

    def __init__(self, ch_in: int, width: int, stride: int, projection: bool):
        super().__init__()
        ch_out = width * self.expansion
        self.short = _shortcut(ch_in, ch_out, stride) if projection else None
        self.branch2a = ConvNormLayer(ch_in, width, 1, 1, act="relu")
        self.branch2b = ConvNormLayer(width, width, 3, stride, act="relu")
        self.branch2c = ConvNormLayer(width, ch_out, 1, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.short is None else self.short(x)
        return self.act(self.branch2c(self.branch2b(self.branch2a(x))) + identity)


class Stage(nn.Module):
    def __init__(self, block: type[nn.Module], ch_in: int, width: int, count: int, stride: int):
        super().__init__()
        blocks = []
        for j in range(count):
            blocks.append(block(ch_in, width, stride if j == 0 else 1, projection=j == 0))
            ch_in = width * block.expansion
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class PResNet(nn.Module):
    """Returns the res3/res4/res5 feature maps (strides 8, 16, 32).

    ``freeze_stem`` stops gradients into the three stem convs; ``frozen_bn`` turns every BN into FrozenBatchNorm2d
    (R50/R101 per the official recipes).
    """

    def __init__(self, depth: int, freeze_stem: bool = False, frozen_bn: bool = False):
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise ValueError(f"PResNet depth must be one of {sorted(BLOCKS_PER_STAGE)}, got {depth}")
        block = BasicBlock if depth < 50 else BottleNeck
        self.depth = depth
        self.conv1 = nn.Sequential(
            OrderedDict(
                conv1_1=ConvNormLayer(3, 32, 3, 2, act="relu"),
                conv1_2=ConvNormLayer(32, 32, 3, 1, act="relu"),
                conv1_3=ConvNormLayer(32, 64, 3, 1, act="relu"),
            )
        )
        self.pool = nn.MaxPool2d(3, 2, 1)
        stages, ch_in = [], 64
        for s, (width, count) in enumerate(zip(STAGE_WIDTHS, BLOCKS_PER_STAGE[depth])):
            stages.append(Stage(block, ch_in, width, count, stride=1 if s == 0 else 2))
            ch_in = width * block.expansion
        self.res_layers = nn.ModuleList(stages)
        self.out_channels = [w * block.expansion for w in STAGE_WIDTHS[1:]]
        self.out_strides = [8, 16, 32]
        if freeze_stem:
            for p in self.conv1.parameters():
                p.requires_grad_(False)
        if frozen_bn:
            freeze_batch_norms(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.pool(self.conv1(x))
        outs = []
        for s, stage in enumerate(self.res_layers):
            x = stage(x)
            if s >= 1:
                outs.append(x)
        return outs
