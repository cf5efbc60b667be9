"""RT-DETR assembly: backbone → hybrid encoder → decoder (with contrastive denoising in training)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from detkit.models.denoising import build_denoising_group
from detkit.models.rtdetr.backbone import PResNet
from detkit.models.rtdetr.decoder import DecoderTrace, RTDETRDecoder
from detkit.models.rtdetr.encoder import HybridEncoder, RepVggBlock


class RTDETR(nn.Module):
    """Forward contract (docs/architecture.md):

    - eval: ``images`` ``[B,3,H,W]`` float in [0, 1] or uint8 (divided by 255 here), H and W multiples of 32 →
      ``{"logits": [B,Q,K], "boxes": [B,Q,4]}`` (normalised cxcywh) from decoder layer ``eval_idx``.
    - train: ``forward(images, targets)`` → last-layer matching outputs plus ``aux_outputs``, ``enc_outputs``,
      ``dn_outputs`` and ``dn_meta`` (see :meth:`RTDETRDecoder.forward`).
    """

    def __init__(
        self,
        backbone: PResNet,
        encoder: HybridEncoder,
        decoder: RTDETRDecoder,
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
        """The backbone stages whose outputs feed the encoder (res3, res4, res5: strides 8, 16, 32)."""
        return list(self.backbone.res_layers)[1:]

    def set_eval_layers(self, k: int) -> None:
        """Run only the first ``k`` decoder layers at inference (their own head answers); weights are unchanged."""
        if not 1 <= k <= self.decoder.num_layers:
            raise ValueError(f"decoder layers must be in 1..{self.decoder.num_layers}, got {k}")
        self.decoder.eval_idx = k - 1

    @contextmanager
    def record_intermediates(self) -> Iterator[DecoderTrace]:
        """Record the decoder's query selection and deformable sampling of the forwards run inside the block.

        >>> with model.record_intermediates() as trace:
        ...     out = model(images)          # outputs unchanged; trace is a DecoderTrace
        Off by default: outside the block nothing is recorded and the forward is untouched. Inference only (the
        module must be in eval mode); one forward per block (a second one would append its layers to the same lists).
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

    def deploy(self) -> RTDETR:
        """Fold every RepVGG block into a single 3×3 conv (deployment form; eval only)."""
        for m in self.modules():
            if isinstance(m, RepVggBlock):
                m.fuse()
        return self

    fuse = deploy

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> dict:
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        h, w = images.shape[-2:]
        if isinstance(h, int) and (h % 32 or w % 32):
            raise ValueError(f"input height and width must be multiples of 32, got {h}×{w}")
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            # channels-last activations: oneDNN (CPU) and cuDNN (tensor cores) run these convolutions faster in
            # this layout, forward and backward, and the token flattening of the encoder/decoder becomes a view
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
