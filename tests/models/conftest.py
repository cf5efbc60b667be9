"""Tiny RT-DETR configurations so that model tests stay fast on a CPU."""

from __future__ import annotations

import pytest
import torch

from detkit.models.config import ModelConfig


def tiny_config(**overrides) -> ModelConfig:
    """PResNet-18 with narrow encoder/decoder: the full architecture at a fraction of the cost."""
    kw = dict(
        depth=18, freeze_stem=False, frozen_bn=False, encoder_dim=64, encoder_ffn_dim=128, expansion=0.5,
        hidden_dim=64, num_heads=4, num_queries=30, decoder_layers=3, decoder_ffn_dim=128, num_denoising=20,
    )
    kw.update(overrides)
    return ModelConfig(**kw)


def randomise_norm_stats(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and box-head weights (fresh models have identity BNs and zero box heads)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif "bbox_head" in name or "bbox_embed" in name or "attention_weights" in name:
                t.add_(torch.randn(t.shape, generator=g) * 0.02)


@pytest.fixture(scope="session")
def make_tiny_config():
    return tiny_config


@pytest.fixture(scope="session")
def randomise():
    return randomise_norm_stats


@pytest.fixture
def tiny_model():
    from detkit.models.builder import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config(), num_classes=5)
    randomise_norm_stats(model)
    return model.eval()
