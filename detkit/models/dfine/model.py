"""D-FINE assembly: HGNetv2 → hybrid encoder → FDR decoder (with contrastive denoising in training)."""

from __future__ import annotations

from torch import nn

from detkit.models.detr_base import DetrModel
from detkit.models.dfine.config import HGNETV2, DFineConfig
from detkit.models.dfine.decoder import DFineDecoder
from detkit.models.dfine.encoder import ConvNorm, DFineHybridEncoder
from detkit.models.dfine.hgnetv2 import HGNetv2
from detkit.models.rtdetr.encoder import RepVggBlock


class DFine(DetrModel):
    """Forward contract (docs/dfine.md §8, docs/architecture.md):

    - eval: ``images`` ``[B,3,H,W]`` float in [0, 1] or uint8 (divided by 255 here), H and W multiples of 32 →
      ``{"logits": [B,Q,K], "boxes": [B,Q,4]}`` (LQE included; normalised cxcywh) from decoder layer ``eval_idx``;
      only the layers up to it run.
    - train: ``forward(images, targets)`` → the outputs the D-FINE criterion reads (see docs/dfine.md §8).
    """

    stage_scopes = ("stages", "layers")  # HGNetv2 stages, decoder layers

    def feature_layers(self) -> list[nn.Module]:
        """The backbone stages whose outputs feed the encoder (``return_stages``)."""
        return [self.backbone.stages[s - 1] for s in self.backbone.return_stages]

    def deploy(self) -> DFine:
        """Deployment form (eval only): RepVGG blocks folded into one 3×3 conv, the encoder's BatchNorms folded into
        their convs and the weighting function frozen into a constant. Folded kernels are non-persistent buffers, so
        checkpoints keep the training form."""
        for m in self.modules():
            if isinstance(m, (RepVggBlock, ConvNorm)):
                m.fuse()
        self.decoder.freeze_weighting_function()
        return self

    fuse = deploy


def build_dfine(cfg: DFineConfig, num_classes: int) -> DFine:
    """Build the D-FINE model of ``cfg`` (state-dict keys = the official D-FINE names, docs/dfine.md §9)."""
    variant = HGNETV2[cfg.backbone]
    backbone = HGNetv2(
        variant["stem"],
        variant["stages"],
        cfg.return_stages,
        use_lab=cfg.use_lab,
        freeze_stem=cfg.freeze_stem,
        frozen_bn=cfg.frozen_bn,
    )
    encoder = DFineHybridEncoder(
        backbone.out_channels,
        hidden_dim=cfg.encoder_dim,
        num_heads=cfg.num_heads,
        ffn_dim=cfg.encoder_ffn_dim,
        dropout=cfg.dropout,
        num_encoder_layers=cfg.encoder_layers,
        expansion=cfg.expansion,
        depth_mult=cfg.depth_mult,
        pe_temperature=cfg.pe_temperature,
    )
    decoder = DFineDecoder(
        num_classes,
        [cfg.encoder_dim] * len(cfg.return_stages),
        hidden_dim=cfg.hidden_dim,
        num_queries=cfg.num_queries,
        num_layers=cfg.decoder_layers,
        num_heads=cfg.num_heads,
        ffn_dim=cfg.decoder_ffn_dim,
        num_points=cfg.num_points,
        dropout=cfg.dropout,
        eval_idx=cfg.eval_idx,
        num_denoising=cfg.num_denoising,
        reg_max=cfg.reg_max,
        reg_scale=cfg.reg_scale,
        up=cfg.up,
        act=cfg.activation,
    )
    return DFine(backbone, encoder, decoder, num_classes, cfg.num_denoising, cfg.label_noise_ratio, cfg.box_noise_scale)
