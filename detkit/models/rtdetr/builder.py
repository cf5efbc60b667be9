"""Build an RT-DETR module from a ``ModelConfig``: explicit constructors, no registry."""

from __future__ import annotations

from detkit.models.rtdetr.backbone import PResNet
from detkit.models.rtdetr.config import ModelConfig
from detkit.models.rtdetr.decoder import RTDETRDecoder
from detkit.models.rtdetr.encoder import HybridEncoder
from detkit.models.rtdetr.model import RTDETR


def build_backbone(cfg: ModelConfig) -> PResNet:
    return PResNet(cfg.depth, freeze_stem=cfg.freeze_stem, frozen_bn=cfg.frozen_bn)


def build_encoder(cfg: ModelConfig, in_channels: list[int]) -> HybridEncoder:
    return HybridEncoder(
        in_channels,
        hidden_dim=cfg.encoder_dim,
        num_heads=cfg.num_heads,
        ffn_dim=cfg.encoder_ffn_dim,
        dropout=cfg.dropout,
        num_encoder_layers=cfg.encoder_layers,
        expansion=cfg.expansion,
        depth_mult=cfg.depth_mult,
        pe_temperature=cfg.pe_temperature,
    )


def build_decoder(cfg: ModelConfig, num_classes: int, in_channels: list[int]) -> RTDETRDecoder:
    return RTDETRDecoder(
        num_classes,
        in_channels,
        hidden_dim=cfg.hidden_dim,
        num_queries=cfg.num_queries,
        num_layers=cfg.decoder_layers,
        num_heads=cfg.num_heads,
        ffn_dim=cfg.decoder_ffn_dim,
        num_points=cfg.points_per_level(),
        dropout=cfg.dropout,
        eval_idx=cfg.eval_idx,
        num_denoising=cfg.num_denoising,
        cross_attn_method=cfg.cross_attn_method,
        activation=cfg.activation,
        query_pos_method=cfg.query_pos_method,
    )


def build_model(cfg: ModelConfig, num_classes: int) -> RTDETR:
    """The full detector for ``num_classes`` classes (labels 0..K−1), randomly initialised."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be ≥ 1, got {num_classes}")
    backbone = build_backbone(cfg)
    encoder = build_encoder(cfg, backbone.out_channels)
    decoder = build_decoder(cfg, num_classes, [cfg.encoder_dim] * len(backbone.out_channels))
    return RTDETR(
        backbone,
        encoder,
        decoder,
        num_classes,
        num_denoising=cfg.num_denoising,
        label_noise_ratio=cfg.label_noise_ratio,
        box_noise_scale=cfg.box_noise_scale,
    )
