"""Distributed data parallel through torch's own machinery, launched by ``torchrun``.

``torchrun --nproc_per_node N -m dualsr_deploy train …`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the
same code runs unlaunched as a single process. CUDA processes use NCCL, CPU processes gloo.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (so all processes stop at the same step)."""
        if not self.active:
            return flag
        value = torch.tensor([1 if flag else 0], dtype=torch.int64)
        if self.device.type == "cuda":
            value = value.to(self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def distributed(device: str | torch.device | None) -> Iterator[Distributed]:
    """The process group for this run (none for a single process); torn down on exit."""
    target = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device is None else torch.device(device)
    if not _launched():
        yield Distributed(0, 1, 0, target)
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if target.type == "cuda":
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
    started_here = not dist.is_initialized()
    if started_here:
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    try:
        yield Distributed(dist.get_rank(), dist.get_world_size(), local_rank, target)
    finally:
        if started_here:
            dist.destroy_process_group()
