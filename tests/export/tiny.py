"""A tiny RT-DETR checkpoint and calibrator for the export, predict and bench tests (built by the real builder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TINY_OVERRIDES = [
    "model.encoder_dim=32",
    "model.encoder_ffn_dim=64",
    "model.hidden_dim=32",
    "model.num_heads=4",
    "model.num_queries=30",
    "model.decoder_layers=2",
    "model.decoder_ffn_dim=64",
    "model.num_denoising=0",
    "model.depth_mult=0.34",
]


def tiny_checkpoint(path: Path, class_map, imgsz: int = 96, seed: int = 0, overrides: list[str] = ()) -> Path:
    """A randomly initialised R18-backbone RT-DETR (narrow encoder/decoder, 30 queries, 2 decoder layers)."""
    import torch

    from detkit.config.recipe import resolve_recipe
    from detkit.models.checkpoint import save_checkpoint
    from detkit.models.rtdetr.builder import build_model

    recipe = resolve_recipe("recipe:rtdetr-r18", overrides=[*TINY_OVERRIDES, f"train.imgsz={imgsz}", *overrides])
    torch.manual_seed(seed)
    model = build_model(recipe.model, len(class_map)).eval()
    return save_checkpoint(path, model=model.state_dict(), class_map=class_map, recipe=recipe.model_dump(mode="json"))


def tiny_calibrator(class_map, with_thresholds: bool = True):
    """A class-wise Platt calibrator with distinct parameters per class (and per-class thresholds)."""
    from detkit.calibration.calibrators import Calibrator

    n = len(class_map)
    params = [{"a": 0.6 + 0.3 * k, "b": 0.4 - 0.2 * k} for k in range(n)]
    thresholds = np.linspace(0.3, 0.6, n) if with_thresholds else None
    return Calibrator("platt", True, "tp", 0.5, class_map, params, thresholds=thresholds)
