"""What every DETR family's detector module shares: the decoder-prefix switch, the query count and the opt-in
trace of intermediates (:class:`DecoderTrace`). A family's module subclasses :class:`DetrModel` and adds its
``forward``, ``deploy`` and ``feature_layers`` (the :class:`detkit.models.family.DetectionModel` protocol)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from detkit.models.denoising import build_denoising_group
from detkit.models.family import Outputs


@dataclass
class DecoderTrace:
    """Intermediates of one inference forward, filled only inside :meth:`RTDETR.record_intermediates`.

    Query ``q`` of image ``b`` started from encoder token ``query_index[b, q]`` (an index into the tokens of all
    levels, flattened row-major level by level in the order of ``spatial_shapes``). For every decoder layer that
    ran, ``reference_boxes[i]`` is the box ``[B, Q, 4]`` (cxcywh in [0, 1]) the layer sampled around,
    ``sampling_locations[i]`` ``[B, Q, heads, levels, points, 2]`` the (x, y) sampling points in [0, 1] of the
    input image, and ``attention_weights[i]`` ``[B, Q, heads, levels, points]`` their weights (each head's weights
    sum to 1 over levels × points; with per-level point counts ``points`` is the largest, and a level's missing
    points repeat the box centre at weight 0). ``token_scores`` ``[B, T]`` is every token's best class logit, by which
    the queries were selected. All tensors are detached.
    """

    spatial_shapes: list[tuple[int, int]] = field(default_factory=list)
    query_index: torch.Tensor | None = None
    reference_boxes: list[torch.Tensor] = field(default_factory=list)
    sampling_locations: list[torch.Tensor] = field(default_factory=list)
    attention_weights: list[torch.Tensor] = field(default_factory=list)
    token_scores: torch.Tensor | None = None


class DetrModel(nn.Module):
    """Backbone → encoder → decoder with contrastive denoising in training; ``forward`` is the same for every
    family (each family's decoder returns its own train-mode outputs). The decoder has ``num_queries``,
    ``num_layers``, ``eval_idx`` (the layer answering at inference), ``trace`` and ``decoder.layers[i].cross_attn``
    (each with a ``trace`` slot) — the attributes the shared behaviour below uses."""

    # module lists whose items stay apart when the INT8 export groups nodes (one group per backbone stage / layer);
    # each family names its own (export writes them into model.json as "stage_scopes")
    stage_scopes: tuple[str, ...] = ("layers",)

    def __init__(
        self,
        backbone: nn.Module,
        encoder: nn.Module,
        decoder: nn.Module,
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

    def set_eval_layers(self, k: int) -> None:
        """Run only the first ``k`` decoder layers at inference (their own heads answer); weights are unchanged."""
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

    @staticmethod
    def prepare_images(images: torch.Tensor) -> torch.Tensor:
        """uint8 → float in [0, 1]; H and W must be multiples of 32."""
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        h, w = images.shape[-2:]
        if isinstance(h, int) and (h % 32 or w % 32):
            raise ValueError(f"input height and width must be multiples of 32, got {h}×{w}")
        return images

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> Outputs:
        images = self.prepare_images(images)
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
