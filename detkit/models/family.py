"""The model-family seam: what a family of detectors gives the rest of detkit.

A family (``detkit/models/<name>/``) is selected by ``model.family`` in a recipe. It owns its architecture, its
training criterion and loss settings, its weight converters and its deployment hooks; the engine, export, the
inference layer and the CLI only talk to the two objects below. ``docs/adding-a-model-family.md`` lists what a
new family provides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from pydantic import BaseModel

Targets = Sequence[dict[str, torch.Tensor]]


@runtime_checkable
class DetectionModel(Protocol):
    """What every family's ``nn.Module`` offers (forward contract in docs/architecture.md).

    - ``forward(images)`` in eval mode → ``{"logits": [B,Q,K], "boxes": [B,Q,4]}`` (raw logits, normalised cxcywh);
      ``forward(images, targets)`` in train mode → whatever the family's criterion reads.
    - ``eval_layers`` / ``decoder_layers`` / ``set_eval_layers(k)``: run a prefix of the decoder at inference.
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

    def deploy(self) -> Any: ...

    def record_intermediates(self) -> AbstractContextManager[Any]: ...

    def __call__(self, images: torch.Tensor, targets: Targets | None = None) -> dict: ...


class Criterion(Protocol):
    """``criterion(outputs, targets) -> {term name: weighted scalar}``; the training loss is the plain sum."""

    def __call__(self, outputs: dict, targets: Targets) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class ModelFamily:
    """One family of detectors, as the rest of detkit sees it.

    - ``config_type``: the pydantic model of the recipe's ``model:`` section (it has ``family: Literal[name]``).
    - ``loss_config_type``: the pydantic model of the recipe's ``loss:`` section.
    - ``build_model(model_cfg, num_classes)`` / ``build_criterion(loss_cfg, num_classes)``.
    - ``loss_groups``: term-name prefixes summed per group in logs and the loss plot.
    - ``feature_tokens(model_cfg, size)``: encoder tokens of a square ``size`` input (query selection needs at
      least ``num_queries``).
    - ``describe(model_cfg)``: short facts for listings, e.g. ``{"backbone": ...}``.
    - ``read_foreign(state_dict)``: a model config read from foreign weights' tensor shapes, or None when the
      weights are not this family's; ``load_weights(model, state_dict, reinit_head, source, class_mismatch_message)``
      loads official, Hugging Face or detkit-layout weights into a built model.
    """

    name: str
    config_type: type[BaseModel]
    loss_config_type: type[BaseModel]
    build_model: Callable[[Any, int], torch.nn.Module]
    build_criterion: Callable[[Any, int], Criterion]
    loss_groups: tuple[str, ...]
    feature_tokens: Callable[[Any, int], int]
    describe: Callable[[Any], dict[str, str]]
    read_foreign: Callable[[dict[str, torch.Tensor]], Any] | None = None
    load_weights: Callable[..., None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

