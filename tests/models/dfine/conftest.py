"""Shared pieces of the D-FINE tests: tiny configurations and the Hugging Face reference configs (offline)."""

from __future__ import annotations

import pytest
import torch

from detkit.models.dfine.config import HGNETV2, DFineConfig
from detkit.models.dfine.model import build_dfine


def tiny_dfine(size: str = "n", **overrides) -> DFineConfig:
    """A preset with few queries and denoising queries, so 128-px inputs suffice."""
    kw = {"size": size, "num_queries": 20, "num_denoising": 10}
    kw.update(overrides)
    return DFineConfig(**kw)


@pytest.fixture(scope="session")
def make_dfine_config():
    return tiny_dfine


@pytest.fixture(scope="module")
def tiny_n():
    """D-FINE-N (3 classes, 20 queries) with random BN statistics and non-zero box heads, in eval mode."""
    from detkit_testing import randomise_norm_stats

    torch.manual_seed(0)
    model = build_dfine(tiny_dfine(), num_classes=3)
    randomise_norm_stats(model)
    randomise_zero_inits(model)
    return model.eval()


def randomise_zero_inits(module: torch.nn.Module, seed: int = 0, std: float = 0.05, convs: bool = False) -> None:
    """Replace the zero/identity initialisations that hide FDR, LQE and gate bugs (docs/dfine.md §11): last layers of
    the box / pre-box / encoder-box / LQE MLPs, the gates, the deformable offsets and weights, BN affine values and
    statistics. ``convs``: He-initialise every conv too (a fresh Hugging Face backbone is nearly constant over the
    image, which ties hundreds of encoder scores)."""
    g = torch.Generator().manual_seed(seed)
    if convs:
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, torch.nn.Conv2d):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
    names = (
        "bbox_embed",
        "bbox_head",
        "pre_bbox_head",
        "reg_conf",
        "gateway.gate",
        "gate.",
        "sampling_offsets",
        "attention_weights",
    )
    with torch.no_grad():
        for name, p in module.named_parameters():
            if any(n in name for n in names) and p.dtype.is_floating_point:
                p.add_(torch.randn(p.shape, generator=g) * std)
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d) or type(m).__name__.endswith("FrozenBatchNorm2d"):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)


def hf_dfine_config(size: str, num_labels: int = 80):
    """Hugging Face ``DFineConfig`` of an official size, set the way HF's conversion script sets it (starting from
    the default config and setting the backbone's ``hidden_sizes`` too)."""
    from transformers import DFineConfig as HFConfig

    ours = DFineConfig(size=size)
    variant = HGNETV2[ours.backbone]
    c = HFConfig()
    c.num_labels = num_labels
    bb = c.backbone_config
    stages = variant["stages"]
    bb.stem_channels = list(variant["stem"])
    bb.stage_in_channels = [s[0] for s in stages]
    bb.stage_mid_channels = [s[1] for s in stages]
    bb.stage_out_channels = [s[2] for s in stages]
    bb.stage_num_blocks = [s[3] for s in stages]
    bb.stage_numb_of_layers = [s[4] for s in stages]
    bb.stage_kernel_size = [s[5] for s in stages]
    bb.stage_light_block = [s[6] for s in stages]
    bb.stage_downsample = [s[7] for s in stages]
    bb.hidden_sizes = [s[2] for s in stages]
    bb.use_learnable_affine_block = ours.use_lab
    if ours.return_stages == [3, 4]:
        bb.out_indices = [3, 4]
    c.encoder_in_channels = [stages[s - 1][2] for s in ours.return_stages]
    c.feat_strides = ours.strides
    c.num_feature_levels = len(ours.return_stages)
    c.encode_proj_layers = [len(ours.return_stages) - 1]
    c.encoder_hidden_dim = ours.encoder_dim
    c.encoder_ffn_dim = ours.encoder_ffn_dim
    c.hidden_expansion = ours.expansion
    c.depth_mult = ours.depth_mult
    c.d_model = ours.hidden_dim
    c.decoder_ffn_dim = ours.decoder_ffn_dim
    c.decoder_in_channels = [ours.encoder_dim] * len(ours.return_stages)
    c.decoder_layers = ours.decoder_layers
    c.decoder_n_points = list(ours.num_points)
    c.reg_scale = ours.reg_scale
    c.freeze_backbone_batch_norms = ours.frozen_bn
    return c


@pytest.fixture(scope="session")
def hf_config():
    return hf_dfine_config


@pytest.fixture(scope="session")
def randomise_dfine():
    return randomise_zero_inits
