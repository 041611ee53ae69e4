"""HDF5 products opened for reading with a chunk cache a run sizes from its memory budget.

HDF5 keeps decompressed chunks of each open dataset in a cache of 1 MiB by default, which holds none of an EMIT
granule's chunks (43 × 427 × 95 float32: 7 MB). A streamed scene reads the same rows more than once (each strip with
its halo; again for the consistency figures and the valid pixels), so every read decompressed its chunks again: 17
full-width reads of a 128-line EMIT-like slice. With a cache of :data:`MOST` the same ``dualsr infer`` of a
256 × 1280 × 285 slice (378 MB as float32, more than the cache) took 148.6 s against 172.8 s, its consistency pass
13.3 against 23.4 s (OpenVINO bf16, in-process, one run each after a run that exported the graphs; 2-core Xeon).

A run sets the size (:func:`size_from_budget`) to a :data:`SHARE` of its memory budget, at most :data:`MOST`, per
open cube dataset, for the run (the size it found again after it); outside runs, HDF5's default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualsr_deploy.data.remote_ranges import hdf5_source

DEFAULT = 1 << 20  # HDF5's own
MOST = 256 << 20
SHARE = 16  # 1/16 of the memory budget: 384 MiB of the default 6 GiB is capped at MOST; 1 GiB gives 64 MiB
SLOTS = 40009  # hash slots (prime): enough that a full cache of 64 KiB chunks seldom collides
_size = [DEFAULT]


def size_from_budget(budget: int) -> int:
    """Set (and return) the chunk cache of HDF5 files opened for reading from now on: ``budget / SHARE``, at most
    :data:`MOST`, at least HDF5's default."""
    _size[0] = max(DEFAULT, min(MOST, budget // SHARE))
    return _size[0]


def cache_size() -> int:
    """The chunk cache HDF5 files opened for reading get now."""
    return _size[0]


def set_cache_size(size: int) -> None:
    """Give HDF5 files opened for reading from now on a chunk cache of ``size`` bytes (a run restores the one it
    found)."""
    _size[0] = size


def open_for_reading(path: Path) -> Any:
    """``h5py.File`` of ``path`` (a local path, or a remote object read by range) for reading, with the run's chunk
    cache for the datasets opened from it."""
    import h5py

    return h5py.File(hdf5_source(path), "r", rdcc_nbytes=_size[0], rdcc_nslots=SLOTS)


__all__ = ["DEFAULT", "MOST", "SHARE", "cache_size", "open_for_reading", "set_cache_size", "size_from_budget"]
