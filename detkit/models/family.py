"""The model-family seam: what a family of detectors gives the rest of detkit.

A family (``detkit/models/<name>/``) is selected by ``model.family`` in a recipe. It owns its architecture, its
training criterion and loss settings, its weight converters and its deployment hooks; the engine, export, the
inference layer and the CLI only talk to the two objects below. ``docs/adding-a-model-family.md`` lists what a
new family provides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, runtime_checkable

import torch
from pydantic import BaseModel

Targets = Sequence[dict[str, torch.Tensor]]


class Outputs(TypedDict, total=False):
    """What a detector module returns (a typed dict: ONNX tracing, DDP and the criteria take it as it is).

    Every family, every mode: ``logits`` ``[B,Q,K]`` (raw) and ``boxes`` ``[B,Q,4]`` (normalised cxcywh) of the
    answering decoder layer. Train mode adds what the family's criterion reads (RT-DETR: ``aux_outputs``,
    ``enc_outputs``, ``dn_outputs``, ``dn_meta``; D-FINE also ``corners``, ``ref_points``, ``up``, ``reg_scale``,
    ``pre_outputs``, ``dn_pre_outputs``; docs/architecture.md, docs/dfine.md). Intermediates for explanations come
    from ``record_intermediates()`` (a :class:`detkit.models.detr_base.DecoderTrace`), off unless asked for.
    """

    logits: torch.Tensor
    boxes: torch.Tensor
    aux_outputs: list[dict[str, torch.Tensor]]
    enc_outputs: list[dict[str, torch.Tensor]]
    dn_outputs: list[dict[str, torch.Tensor]] | None
    dn_meta: dict[str, Any] | None


@runtime_checkable
class DetectionModel(Protocol):
    """What every family's ``nn.Module`` offers (forward contract in docs/architecture.md).

    - ``forward(images)`` in eval mode → ``{"logits": [B,Q,K], "boxes": [B,Q,4]}`` (raw logits, normalised cxcywh);
      ``forward(images, targets)`` in train mode → whatever the family's criterion reads.
    - ``eval_layers`` / ``decoder_layers`` / ``set_eval_layers(k)``: run a prefix of the decoder at inference.
    - ``feature_layers()``: the backbone modules whose outputs feed the encoder (explanation maps hook them).
    - ``deploy()``: fold training-only structure (re-parameterised convolutions) in place, eval only.
    - ``record_intermediates()``: a context manager yielding the family's trace of the forwards run inside it.
    """

    num_classes: int

    @property
    def num_queries(self) -> int: ...

    @property
    def eval_layers(self) -> int: ...

    @property
    def decoder_layers(self) -> int: ...

    def set_eval_layers(self, k: int) -> None: ...

    def feature_layers(self) -> list[torch.nn.Module]: ...

    def deploy(self) -> Any: ...

    def record_intermediates(self) -> AbstractContextManager[Any]: ...

    def __call__(self, images: torch.Tensor, targets: Targets | None = None) -> Outputs: ...


@dataclass(frozen=True)
class ForeignWeights:
    """What a family reads from weights that came without a recipe (official or Hugging Face files).

    ``config``: the family's ``model:`` section rebuilt from tensor shapes; ``num_classes``: the class head's size;
    ``imgsz``: the square input size the file was made for, when it says; ``recipe``: the shipped recipe closest to
    it (its training settings are used); ``summary``: one line saying what the weights are, for hints.
    """

    config: Any
    num_classes: int
    imgsz: int | None
    recipe: str
    summary: str


class Criterion(Protocol):
    """``criterion(outputs, targets) -> {term name: weighted scalar}``; the training loss is the plain sum."""

    def __call__(self, outputs: Outputs, targets: Targets) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class ModelFamily:
    """One family of detectors, as the rest of detkit sees it.

    - ``config_type``: the pydantic model of the recipe's ``model:`` section (it has ``family: Literal[name]``).
    - ``loss_config_type``: the pydantic model of the recipe's ``loss:`` section.
    - ``build_model(model_cfg, num_classes)`` / ``build_criterion(loss_cfg, num_classes)``.
    - ``loss_groups(loss_cfg)``: term-name prefixes summed per group in logs and the loss plot.
    - ``feature_tokens(model_cfg, size)``: encoder tokens of a square ``size`` input (query selection needs at
      least ``num_queries``).
    - ``describe(model_cfg)``: short facts for listings, e.g. ``{"backbone": ...}``.
    - ``read_foreign(state_dict) -> ForeignWeights``: the architecture read from foreign weights' tensor shapes
      (raises ``DetkitError`` when the weights are not a whole model of this family); ``weights_hint``: what the
      family reads, for errors; ``load_weights(model, state_dict, *, reinit_head, source, class_mismatch_message)``
      loads detkit, official or Hugging Face layouts into a built model.
    """

    name: str
    config_type: type[BaseModel]
    loss_config_type: type[BaseModel]
    build_model: Callable[[Any, int], torch.nn.Module]
    build_criterion: Callable[[Any, int], Criterion]
    loss_groups: Callable[[Any], tuple[str, ...]]
    feature_tokens: Callable[[Any, int], int]
    describe: Callable[[Any], dict[str, str]]
    read_foreign: Callable[[dict[str, torch.Tensor]], ForeignWeights]
    weights_hint: str
    load_weights: Callable[..., None]


def total_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training loss of a criterion's terms: their plain sum (terms come weighted)."""
    return torch.stack(list(losses.values())).sum()
