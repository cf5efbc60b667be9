"""Assertions shared by the test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def assert_clean_error(result, *needles: str) -> None:
    """A user error: non-zero exit, an 'error:' line naming the problem, and no traceback."""
    assert result.code != 0, result.text
    assert "Traceback" not in result.text, result.text
    assert "error:" in result.err, result.text
    for n in needles:
        assert n in result.err, f"{n!r} not in {result.err!r}"


def mongod_processes(db_dir) -> list:
    """Running ``mongod`` processes serving the database folder ``db_dir``."""
    import contextlib

    import psutil

    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if p.info["name"] == "mongod" and str(db_dir) in " ".join(p.info["cmdline"] or []):
                found.append(p)
    return found


def assert_same_state(a, b, what: str = "state") -> None:
    """Two checkpoint fields (nested dicts / lists of tensors and plain values) are equal bit for bit."""
    import torch

    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), what
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            assert_same_state(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{what}[{i}]")
    else:
        assert a == b, what


def randomise_norm_stats(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and box-head weights (fresh models have identity BNs and zero box heads)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif "bbox_head" in name or "bbox_embed" in name or "attention_weights" in name:
                t.add_(torch.randn(t.shape, generator=g) * 0.02)
