"""Tiny RT-DETR variants for the inference-layer tests (helpers; the fixtures are in conftest.py)."""

from __future__ import annotations

import torch
from detkit_testing import randomise_norm_stats

from detkit.models.rtdetr.config import ModelConfig

IMGSZ = 160  # ≥ 300 feature tokens (400 + 100 + 25) for the 300 queries bare weights are built with


def tiny_config(depth: int = 18, **overrides) -> ModelConfig:
    """A narrow encoder/decoder on a real PResNet backbone, with the values bare weights cannot show (8 heads,
    300 queries, last-layer eval) at their defaults, and the training flags the official recipes use per depth."""
    kw = {
        "depth": depth,
        "freeze_stem": depth >= 50,
        "frozen_bn": depth >= 50,
        "encoder_dim": 64,
        "encoder_ffn_dim": 128,
        "expansion": 0.5,
        "depth_mult": 1 / 3,
        "hidden_dim": 64,
        "decoder_layers": 2,
        "decoder_ffn_dim": 96,
    }
    kw.update(overrides)
    return ModelConfig(**kw)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics and box heads (the shared helper), in eval mode."""
    randomise_norm_stats(model, seed)
    return model.eval()


def build_tiny(cfg: ModelConfig, num_classes: int, seed: int = 0) -> torch.nn.Module:
    from detkit.models.rtdetr.builder import build_model

    torch.manual_seed(seed)
    return randomise(build_model(cfg, num_classes), seed)
