"""Parameter counts of D-FINE models in training and deployment form (docs/dfine.md §10).

The deployment form counts what :meth:`DFine.deploy` leaves in use, the way the official figures do: every folded
conv (RepVGG block, encoder ConvBN) as one conv with bias, and of the decoder heads only those of the answering
layer (the class head and LQE of earlier layers, and all layers after it, are dropped; the box heads of earlier
layers stay, since the corner logits are refined residually).
"""

from __future__ import annotations

import torch
from torch import nn

from detkit.models.dfine.config import DFineConfig
from detkit.models.dfine.encoder import ConvNorm
from detkit.models.dfine.model import DFine, build_dfine
from detkit.models.rtdetr.encoder import RepVggBlock


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def deployed_parameter_count(model: DFine) -> int:
    """Parameters of ``model`` in deployment form (it need not have been deployed; nothing is changed)."""
    dropped: set[int] = set()
    total = 0
    for m in model.modules():
        if isinstance(m, (RepVggBlock, ConvNorm)):
            weight = m.conv1.conv.weight if isinstance(m, RepVggBlock) else m.conv.weight
            total += weight.numel() + weight.shape[0]  # one 3×3 (or k×k) kernel plus bias
            dropped.update(id(p) for p in m.parameters())
    dec = model.decoder
    answering = dec.eval_idx
    for i in range(dec.num_layers):
        unused = [] if i == answering else [dec.dec_score_head[i], dec.decoder.lqe_layers[i]]
        if i > answering:
            unused += [dec.decoder.layers[i], dec.dec_bbox_head[i]]
        for m in unused:
            dropped.update(id(p) for p in m.parameters())
    return total + sum(p.numel() for p in model.parameters() if id(p) not in dropped)


def deployed_gflops(cfg: DFineConfig, num_classes: int = 80, imgsz: tuple[int, int] = (640, 640)) -> float:
    """GFLOPs of one deployment-form forward at ``imgsz`` (2 × multiply-accumulates of convs and matrix products,
    attention-score products included; sampling, norms and activations not counted), on the meta device."""
    from detkit.models.profile import count_gflops

    with torch.device("meta"):
        model = build_dfine(cfg, num_classes).eval().deploy()
    return count_gflops(model, imgsz)


def parameter_counts(cfg: DFineConfig, num_classes: int = 80) -> tuple[int, int]:
    """(training form, deployment form) parameter counts of ``cfg``, built on the meta device."""
    with torch.device("meta"):
        model = build_dfine(cfg, num_classes)
    return count_parameters(model), deployed_parameter_count(model)
