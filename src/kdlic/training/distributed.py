"""Process-group set-up for ``torchrun`` (DDP); a no-op for a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kdlic.utils.device import parse_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment.

    Backend: NCCL for CUDA devices, gloo otherwise (CPU processes, tests).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(device: str, ddp: Dist) -> torch.device:
    """``cuda`` under torchrun means this process's GPU (``cuda:LOCAL_RANK``)."""
    parsed = parse_device(device)
    if device == "cuda" and ddp.enabled:
        return torch.device("cuda", ddp.local_rank)
    return parsed


def all_reduce_mean(tensors: list[torch.Tensor], ddp: Dist) -> None:
    """Average ``tensors`` in place over all processes."""
    if not ddp.enabled:
        return
    for t in tensors:
        dist.all_reduce(t)
        t.div_(ddp.world_size)
