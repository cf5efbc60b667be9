"""Fake D-FINE training outputs of the model's output contract (random tensors, tiny sizes)."""

from __future__ import annotations

import pytest
import torch

K, Q, L, REG_MAX = 4, 8, 3, 32


def _boxes(g: torch.Generator, *shape: int) -> torch.Tensor:
    centre = torch.rand(*shape, 2, generator=g) * 0.5 + 0.25
    size = torch.rand(*shape, 2, generator=g) * 0.3 + 0.1
    return torch.cat([centre, size], -1)


def make_targets(sizes: list[int], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed + 100)
    return [{"labels": torch.randint(0, K, (n,), generator=g), "boxes": _boxes(g, n)} for n in sizes]


def _layer(g: torch.Generator, b: int, q: int, ref: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "logits": torch.randn(b, q, K, generator=g).requires_grad_(),
        "boxes": _boxes(g, b, q).requires_grad_(),
        "corners": torch.randn(b, q, 4 * (REG_MAX + 1), generator=g).requires_grad_(),
        "ref_points": ref,
    }


def _with_teacher(layers: list[dict]) -> None:
    """Every layer but the last gets the last layer's corners and logits as its teacher (the contract's aux keys)."""
    for layer in layers[:-1]:
        layer["teacher_corners"] = layers[-1]["corners"]
        layer["teacher_logits"] = layers[-1]["logits"]


def make_outputs(sizes: list[int], seed: int = 0, denoising: bool = False, num_group: int = 2) -> dict:
    """Train outputs for a batch with ``sizes`` objects per image; with ``denoising`` the DN part too."""
    g = torch.Generator().manual_seed(seed)
    b = len(sizes)
    ref = _boxes(g, b, Q)
    layers = [_layer(g, b, Q, ref) for _ in range(L)]
    _with_teacher(layers)
    out = dict(layers[-1])
    out.update(
        {
            "up": torch.tensor([0.5]),
            "reg_scale": torch.tensor([4.0]),
            "aux_outputs": layers[:-1],
            "pre_outputs": {"logits": torch.randn(b, Q, K, generator=g).requires_grad_(), "boxes": ref},
            "enc_outputs": [
                {
                    "logits": torch.randn(b, Q, K, generator=g).requires_grad_(),
                    "boxes": _boxes(g, b, Q).requires_grad_(),
                }
            ],
            "dn_outputs": None,
            "dn_pre_outputs": None,
            "dn_meta": None,
        }
    )
    if denoising:
        max_gt = max(1, max(sizes))
        groups = num_group if max(sizes) else 1
        n_dn = 2 * max_gt * groups
        dn_ref = _boxes(g, b, n_dn)
        dn_layers = [_layer(g, b, n_dn, dn_ref) for _ in range(L)]
        _with_teacher(dn_layers)
        dn_layers[-1]["teacher_corners"] = dn_layers[-1]["corners"]  # the last DN layer distils from itself
        dn_layers[-1]["teacher_logits"] = dn_layers[-1]["logits"]
        offsets = torch.arange(groups)[:, None] * 2 * max_gt
        out.update(
            {
                "dn_outputs": dn_layers,
                "dn_pre_outputs": {"logits": torch.randn(b, n_dn, K, generator=g).requires_grad_(), "boxes": dn_ref},
                "dn_meta": {
                    "positive_idx": [(offsets + torch.arange(n)[None]).reshape(-1) for n in sizes],
                    "num_group": groups,
                    "num_split": [n_dn, Q],
                },
            }
        )
    return out


@pytest.fixture
def fake():
    return make_outputs, make_targets
