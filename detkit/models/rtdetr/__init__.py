"""The RT-DETR family: PResNet-vd backbone, hybrid encoder, deformable decoder with contrastive denoising
(docs/rt-detr.md). ``FAMILY`` is what the rest of detkit sees (``detkit.models.families``)."""

from __future__ import annotations

from detkit.models.family import ForeignWeights, ModelFamily
from detkit.models.rtdetr.config import LossConfig, ModelConfig

# the three feature maps the encoder hands to the decoder (every PResNet variant)
FEATURE_STRIDES = (8, 16, 32)
LOSS_GROUPS = ("loss_vfl", "loss_bbox", "loss_giou")  # with the default classification term (vfl)


def _build_model(cfg: ModelConfig, num_classes: int):
    from detkit.models.rtdetr.builder import build_model

    return build_model(cfg, num_classes)


def _build_criterion(cfg: LossConfig, num_classes: int):
    from detkit.models.rtdetr.criterion import SetCriterion

    return SetCriterion(num_classes, cfg)


def _loss_groups(cfg: LossConfig) -> tuple[str, ...]:
    return (f"loss_{cfg.classification}", "loss_bbox", "loss_giou")


def _feature_tokens(cfg: ModelConfig, size: int) -> int:
    return sum((size // s) ** 2 for s in FEATURE_STRIDES)


def _describe(cfg: ModelConfig) -> dict[str, str]:
    return {"backbone": f"PResNet-{cfg.depth}vd", "decoder_layers": str(cfg.decoder_layers)}


def _read_foreign(state_dict: dict) -> ForeignWeights:
    from detkit.models.rtdetr.infer_config import class_count, infer_imgsz, infer_model_config

    cfg = infer_model_config(state_dict)
    extras = "".join(
        [
            f", points {cfg.num_points}" if cfg.num_points != 4 else "",
            f", query position {cfg.query_pos_method}, {cfg.activation}" if cfg.query_pos_method != "default" else "",
        ]
    )
    summary = (
        f"RT-DETR-R{cfg.depth} (encoder {cfg.encoder_dim}, decoder {cfg.hidden_dim} × "
        f"{cfg.decoder_layers} layers{extras})"
    )
    return ForeignWeights(cfg, class_count(state_dict), infer_imgsz(state_dict), f"rtdetr-r{cfg.depth}", summary)


def _load_weights(model, state_dict, **kwargs) -> None:
    from detkit.models.rtdetr.convert_weights import load_into

    load_into(model, state_dict, **kwargs)


FAMILY = ModelFamily(
    name="rtdetr",
    config_type=ModelConfig,
    loss_config_type=LossConfig,
    build_model=_build_model,
    build_criterion=_build_criterion,
    loss_groups=_loss_groups,
    feature_tokens=_feature_tokens,
    describe=_describe,
    read_foreign=_read_foreign,
    weights_hint="complete RT-DETR models with a PResNet-vd backbone (detkit, official v1/v2 or Hugging Face layout)",
    load_weights=_load_weights,
)
