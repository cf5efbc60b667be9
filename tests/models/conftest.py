"""Tiny RT-DETR configurations so that model tests stay fast on a CPU."""

from __future__ import annotations

import pytest
import torch
from detkit_testing import randomise_norm_stats

from detkit.models.rtdetr.config import ModelConfig


def tiny_config(**overrides) -> ModelConfig:
    """PResNet-18 with narrow encoder/decoder: the full architecture at a fraction of the cost."""
    kw = dict(
        depth=18,
        freeze_stem=False,
        frozen_bn=False,
        encoder_dim=64,
        encoder_ffn_dim=128,
        expansion=0.5,
        hidden_dim=64,
        num_heads=4,
        num_queries=30,
        decoder_layers=3,
        decoder_ffn_dim=128,
        num_denoising=20,
    )
    kw.update(overrides)
    return ModelConfig(**kw)


@pytest.fixture(scope="session")
def make_tiny_config():
    return tiny_config


@pytest.fixture(scope="session")
def randomise():
    return randomise_norm_stats


@pytest.fixture
def tiny_model():
    from detkit.models.rtdetr.builder import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config(), num_classes=5)
    randomise_norm_stats(model)
    return model.eval()
