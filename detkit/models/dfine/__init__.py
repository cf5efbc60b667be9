"""The D-FINE family (``model.family: dfine``): HGNetv2 backbones, the D-FINE hybrid encoder and the FDR decoder
(docs/dfine.md). The criterion lives with the training code; this package gives the architecture, its weight
converters and the pieces the family registry needs."""

from __future__ import annotations

from detkit.models.dfine.config import DFineConfig
from detkit.models.dfine.convert_weights import load_dfine_weights, read_dfine_config
from detkit.models.dfine.model import DFine, build_dfine

__all__ = ["DFine", "DFineConfig", "build_dfine", "describe", "feature_tokens", "load_dfine_weights",
           "read_dfine_config"]


def feature_tokens(cfg: DFineConfig, size: int) -> int:
    """Encoder tokens of a square ``size`` input (query selection needs at least ``num_queries``)."""
    return sum((size // s) ** 2 for s in cfg.strides)


def describe(cfg: DFineConfig) -> dict[str, str]:
    """Short facts for listings."""
    return {
        "backbone": f"HGNetv2-{cfg.backbone}",
        "size": f"D-FINE-{cfg.size.upper()}",
        "decoder": f"{cfg.decoder_layers} layers × {cfg.hidden_dim}, points {cfg.num_points}, reg_max {cfg.reg_max}",
    }
