"""RT-DETR assembly: backbone → hybrid encoder → decoder (with contrastive denoising in training)."""

from __future__ import annotations

from torch import nn

from detkit.models.detr_base import DetrModel
from detkit.models.rtdetr.encoder import RepVggBlock


class RTDETR(DetrModel):
    """Forward contract (docs/architecture.md):

    - eval: ``images`` ``[B,3,H,W]`` float in [0, 1] or uint8 (divided by 255 here), H and W multiples of 32 →
      ``{"logits": [B,Q,K], "boxes": [B,Q,4]}`` (normalised cxcywh) from decoder layer ``eval_idx``.
    - train: ``forward(images, targets)`` → last-layer matching outputs plus ``aux_outputs``, ``enc_outputs``,
      ``dn_outputs`` and ``dn_meta`` (see :meth:`RTDETRDecoder.forward`).
    """

    stage_scopes = ("res_layers", "layers")  # PResNet stages, decoder layers

    def feature_layers(self) -> list[nn.Module]:
        """The backbone stages whose outputs feed the encoder (res3, res4, res5: strides 8, 16, 32)."""
        return list(self.backbone.res_layers)[1:]

    def deploy(self) -> RTDETR:
        """Fold every RepVGG block into a single 3×3 conv (deployment form; eval only)."""
        for m in self.modules():
            if isinstance(m, RepVggBlock):
                m.fuse()
        return self

    fuse = deploy
