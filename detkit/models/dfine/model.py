"""D-FINE assembly: HGNetv2 → hybrid encoder → FDR decoder (with contrastive denoising in training)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from detkit.models.denoising import build_denoising_group
from detkit.models.dfine.config import HGNETV2, DFineConfig
from detkit.models.dfine.decoder import DFineDecoder
from detkit.models.dfine.encoder import ConvNorm, DFineHybridEncoder
from detkit.models.dfine.hgnetv2 import HGNetv2
from detkit.models.rtdetr.decoder import DecoderTrace
from detkit.models.rtdetr.encoder import RepVggBlock


class DFine(nn.Module):
    """Forward contract (docs/dfine.md §8, docs/architecture.md):

    - eval: ``images`` ``[B,3,H,W]`` float in [0, 1] or uint8 (divided by 255 here), H and W multiples of 32 →
      ``{"logits": [B,Q,K], "boxes": [B,Q,4]}`` (LQE included; normalised cxcywh) from decoder layer ``eval_idx``;
      only the layers up to it run.
    - train: ``forward(images, targets)`` → the outputs the D-FINE criterion reads (see docs/dfine.md §8).
    """

    def __init__(
        self,
        backbone: HGNetv2,
        encoder: DFineHybridEncoder,
        decoder: DFineDecoder,
        num_classes: int,
        num_denoising: int = 100,
        label_noise_ratio: float = 0.5,
        box_noise_scale: float = 1.0,
    ):
        super().__init__()
        self.backbone = backbone
        self.encoder = encoder
        self.decoder = decoder
        self.num_classes = num_classes
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale

    @property
    def num_queries(self) -> int:
        return self.decoder.num_queries

    @property
    def eval_layers(self) -> int:
        """How many decoder layers run at inference."""
        return self.decoder.eval_idx + 1

    @property
    def decoder_layers(self) -> int:
        """How many decoder layers were trained."""
        return self.decoder.num_layers

    def feature_layers(self) -> list[nn.Module]:
        """The backbone stages whose outputs feed the encoder (``return_stages``)."""
        return [self.backbone.stages[s - 1] for s in self.backbone.return_stages]

    def set_eval_layers(self, k: int) -> None:
        """Run only the first ``k`` decoder layers at inference (layer k's own class head and LQE answer)."""
        if not 1 <= k <= self.decoder.num_layers:
            raise ValueError(f"decoder layers must be in 1..{self.decoder.num_layers}, got {k}")
        self.decoder.eval_idx = k - 1

    @contextmanager
    def record_intermediates(self) -> Iterator[DecoderTrace]:
        """Record the query selection and deformable sampling of the forwards run inside the block (eval only).

        The trace has RT-DETR's shapes: ``sampling_locations[i]`` ``[B, Q, heads, levels, max points, 2]`` and
        ``attention_weights[i]`` ``[B, Q, heads, levels, max points]``; a level with fewer points than the most
        (S/M/L/X sample 3, 6, 3) is padded with weight-0 points at the box centre.
        """
        if self.training:
            raise RuntimeError("record_intermediates() needs the model in eval mode (call model.eval() first)")
        trace = DecoderTrace()
        attentions = [layer.cross_attn for layer in self.decoder.decoder.layers]
        self.decoder.trace = trace
        for attn in attentions:
            attn.trace = trace
        try:
            yield trace
        finally:
            self.decoder.trace = None
            for attn in attentions:
                attn.trace = None

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

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> dict:
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        h, w = images.shape[-2:]
        if isinstance(h, int) and (h % 32 or w % 32):
            raise ValueError(f"input height and width must be multiples of 32, got {h}×{w}")
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            images = images.contiguous(memory_format=torch.channels_last)
        feats = self.encoder(self.backbone(images))
        dn = None
        if self.training and targets is not None and self.num_denoising > 0:
            dn = build_denoising_group(
                targets,
                self.num_classes,
                self.decoder.num_queries,
                self.num_denoising,
                self.label_noise_ratio,
                self.box_noise_scale,
            )
        return self.decoder(feats, dn)


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
