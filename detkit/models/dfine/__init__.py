"""The D-FINE family (``model.family: dfine``): HGNetv2 backbones, the D-FINE hybrid encoder and the FDR decoder
(docs/dfine.md), its criterion (FGL, DDF, the union matching set; docs/dfine-losses.md) and weight converters.
``FAMILY`` is what the rest of detkit sees (``detkit.models.families``)."""

from __future__ import annotations

from detkit.errors import DetkitError
from detkit.models.dfine.config import DFineConfig
from detkit.models.dfine.convert_weights import load_dfine_weights, read_dfine_config
from detkit.models.dfine.loss_config import DFineLossConfig
from detkit.models.dfine.model import DFine, build_dfine
from detkit.models.family import ForeignWeights, ModelFamily

__all__ = [
    "DFine",
    "DFineConfig",
    "build_dfine",
    "describe",
    "feature_tokens",
    "load_dfine_weights",
    "read_dfine_config",
    "FAMILY",
]


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


def _describe(cfg: DFineConfig) -> dict[str, str]:
    return {**describe(cfg), "decoder_layers": str(cfg.decoder_layers)}


def _build_criterion(cfg: DFineLossConfig, num_classes: int):
    from detkit.models.dfine.criterion import DFineCriterion

    return DFineCriterion(num_classes, cfg)


def _loss_groups(cfg: DFineLossConfig) -> tuple[str, ...]:
    return (f"loss_{cfg.classification}", "loss_bbox", "loss_giou", "loss_fgl", "loss_ddf")


def _read_foreign(state_dict: dict) -> ForeignWeights:
    from detkit.models.dfine.convert_weights import to_detkit, unwrap

    cfg = read_dfine_config(state_dict)
    if cfg is None:
        raise DetkitError("weights are not a D-FINE state dict (no HGNetv2 backbone with a D-FINE decoder)")
    head = to_detkit(unwrap(state_dict)).get("decoder.enc_score_head.weight")
    summary = (
        f"D-FINE-{cfg.size.upper()} (HGNetv2-{cfg.backbone}, encoder {cfg.encoder_dim}, decoder "
        f"{cfg.hidden_dim} × {cfg.decoder_layers} layers)"
    )
    return ForeignWeights(cfg, int(head.shape[0]), None, f"dfine-{cfg.size}", summary)


FAMILY = ModelFamily(
    name="dfine",
    config_type=DFineConfig,
    loss_config_type=DFineLossConfig,
    build_model=build_dfine,
    build_criterion=_build_criterion,
    loss_groups=_loss_groups,
    feature_tokens=feature_tokens,
    describe=_describe,
    read_foreign=_read_foreign,
    weights_hint="D-FINE models with an HGNetv2 backbone (detkit, official D-FINE/DEIM or Hugging Face layout)",
    load_weights=load_dfine_weights,
)
