"""Batch order: fixed by (seed, epoch), resumable mid-epoch, split across processes without overlap."""

from __future__ import annotations

from dualsr_deploy.train.sampler import EpochBatches


def test_order_depends_on_seed_and_epoch_only() -> None:
    a = list(EpochBatches(50, 8, seed=1, epoch=3))
    assert a == list(EpochBatches(50, 8, seed=1, epoch=3))
    assert a != list(EpochBatches(50, 8, seed=1, epoch=4))
    assert a != list(EpochBatches(50, 8, seed=2, epoch=3))
    assert len(a) == 6
    assert all(len(batch) == 8 for batch in a)


def test_a_resumed_epoch_continues_the_same_order() -> None:
    whole = list(EpochBatches(50, 8, seed=0, epoch=0))
    assert list(EpochBatches(50, 8, seed=0, epoch=0, start=4)) == whole[4:]
    assert len(EpochBatches(50, 8, seed=0, epoch=0, start=4)) == 2


def test_processes_share_each_global_batch() -> None:
    whole = list(EpochBatches(64, 8, seed=0, epoch=1))
    ranks = [list(EpochBatches(64, 8, seed=0, epoch=1, rank=r, world_size=2)) for r in range(2)]
    for step, batch in enumerate(whole):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(batch)
        assert not set(ranks[0][step]) & set(ranks[1][step])
