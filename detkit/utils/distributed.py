"""Distributed data parallel helpers: ``torchrun`` environment detection, process group, reductions.

Launch with ``torchrun --nproc_per_node N -m detkit train ...``; a plain ``detkit train`` is one process.
gloo is used on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """What ``torchrun`` put in the environment (a single process when it did not)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(os.environ["RANK"]), local_rank=int(os.environ.get("LOCAL_RANK", "0")), world_size=world)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (idempotent); returns this process's place in it."""
    info = env_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return info


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over processes (identity in a single process). Every rank must call it (no skipping)."""
    if not is_dist():
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / dist.get_world_size()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if not is_dist():
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_flags(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag true on every rank if it is true on any rank, in one all-reduce (the training step's NaN guard
    and wall-time limit share it)."""
    if not is_dist():
        return [bool(f) for f in flags]
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    return [v > 0 for v in all_reduce_sum(t).tolist()]


def broadcast_object(obj):
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap_ddp(
    model: torch.nn.Module, device: torch.device, sync_bn: bool, find_unused_parameters: bool
) -> torch.nn.Module:
    """SyncBN (per recipe) + DistributedDataParallel; the model as is in a single process."""
    if not is_dist():
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=find_unused_parameters
    )
