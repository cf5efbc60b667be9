"""``resolve_device``: the one meaning of a device name in detkit (training, inference, export, bench)."""

from __future__ import annotations

import torch

from detkit.errors import DetkitError


def resolve_device(device: str | torch.device | None = None, local_rank: int = 0) -> torch.device:
    """The torch device that ``device`` names.

    ``None``, ``""`` or ``"auto"``: ``cuda:<local_rank>`` when CUDA is available, else the CPU. ``"cuda"`` without an
    index is ``cuda:<local_rank>`` (each process of a multi-GPU run on its own GPU). Any other name is passed to
    :class:`torch.device`; an unknown name, or CUDA asked for where there is none, is a :class:`DetkitError`.
    """
    if device is None or str(device) in ("auto", ""):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DetkitError(
            f"unknown device {str(device)!r}", hint="use auto, cpu, cuda or cuda:N", params="device"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DetkitError(
            f"device {str(device)!r} requested but CUDA is not available",
            hint="use the cpu device, or auto (CUDA only where it is available)",
            params="device",
        )
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev
