"""Deterministic batches: the order of an epoch depends only on (seed, epoch), so a resumed run sees the same
batches an uninterrupted one would have, and each process of a distributed run takes its own share."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``range(size)`` fixed by ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=generator)


class EpochBatches:
    """Index batches of one epoch for one process, skipping the first ``start`` batches (after a resume).

    The global batch of ``batch_size`` samples is split across ``world_size`` processes; the last incomplete
    global batch is dropped (BatchNorm needs full batches, and every process must take the same number of steps).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} does not split over {world_size} processes")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.world_size = world_size
        self.start = start

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.batch_size

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_order(self.size, self.seed, self.epoch)
        share = self.batch_size // self.world_size
        for batch in range(self.start, self.batches_per_epoch):
            first = batch * self.batch_size + self.rank * share
            yield order[first : first + share].tolist()
