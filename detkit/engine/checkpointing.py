"""Training state <-> plain checkpoint values (tensors, numbers, strings, lists, dicts) for exact resume.

RNG states are stored as tensors and plain values so that ``torch.load(weights_only=True)`` reads them.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from detkit.utils import distributed


def capture_rng() -> dict[str, Any]:
    """torch (per process under DDP), numpy and python RNG states, plus CUDA when present."""
    torch_state = torch.get_rng_state()
    if distributed.is_dist():
        # nccl only moves CUDA tensors; gloo moves CPU tensors
        on = (
            torch.device("cuda", torch.cuda.current_device())
            if torch.distributed.get_backend() == "nccl"
            else torch.device("cpu")
        )
        local = torch_state.to(on)
        gathered = [torch.empty_like(local) for _ in range(distributed.world_size())]
        torch.distributed.all_gather(gathered, local)
        torch_states = torch.stack(gathered).cpu()
    else:
        torch_states = torch_state[None]
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    out: dict[str, Any] = {
        "torch": torch_states,
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state(torch.cuda.current_device())
    return out


def restore_rng(state: dict[str, Any]) -> None:
    torch_states = state["torch"]
    r = distributed.rank()
    torch.set_rng_state(torch_states[r if r < torch_states.shape[0] else 0].clone())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"], torch.cuda.current_device())
