"""HDF5 products are read with a chunk cache sized from the run's memory budget (HDF5's 1 MiB default holds none of
an EMIT granule's 7 MB chunks, so every strip read decompressed them again)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from dualsr_deploy.data.formats import chunk_cache
from dualsr_deploy.data.formats.chunk_cache import DEFAULT, MOST, open_for_reading, size_from_budget
from dualsr_deploy.infer import InferOptions, run_archive
from dualsr_deploy.infer.options import BackendSpec


def _cache_of(path: Path, name: str) -> int:
    with open_for_reading(path) as handle:
        _slots, nbytes, _w0 = handle[name].id.get_access_plist().get_chunk_cache()
    return int(nbytes)


def test_the_cache_is_a_share_of_the_budget_within_bounds(tmp_path: Path) -> None:
    path = tmp_path / "cube.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("cube", data=np.zeros((8, 16, 16), np.float32), chunks=(8, 8, 8), compression="gzip")
    try:
        assert size_from_budget(1 << 30) == 64 << 20
        assert _cache_of(path, "cube") == 64 << 20
        assert size_from_budget(64 << 30) == MOST
        assert size_from_budget(1 << 20) == DEFAULT  # never below HDF5's own
    finally:
        size_from_budget(0)


def test_a_run_sizes_the_cache_from_its_budget_and_leaves_it_as_it_found_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files a run opens get a cache from its budget; after the run, files opened get the size from before it."""
    from dualsr_deploy.data.formats import hdf5

    archive = tmp_path / "lr"
    archive.mkdir()
    cube = np.random.default_rng(0).random((6, 12, 12)).astype(np.float32)
    with h5py.File(archive / "a.h5", "w") as handle:
        handle.create_dataset("cube", data=cube, chunks=(6, 6, 6), compression="gzip")
    seen: list[int] = []

    def recording(path: Path) -> h5py.File:
        handle = open_for_reading(path)
        seen.append(int(handle["cube"].id.get_access_plist().get_chunk_cache()[1]))
        return handle

    monkeypatch.setattr(hdf5, "open_for_reading", recording)
    try:
        size_from_budget(1 << 30)  # what an earlier run (or the caller) had set
        options = InferOptions(scale=2, stage="coarse", backend=BackendSpec("torch"), memory_budget=2 << 30)
        report = run_archive(archive, tmp_path / "out", options)
        assert report.exit_code == 0
        assert seen[-1] == 128 << 20  # the scene read (listing the archive, before, reads no chunk)
        assert chunk_cache.cache_size() == 64 << 20
        assert _cache_of(archive / "a.h5", "cube") == 64 << 20
    finally:
        size_from_budget(0)
