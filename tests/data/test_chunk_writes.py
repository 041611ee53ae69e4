"""Compressed HDF5 cubes are written a chunk at a time by threads (:mod:`dualsr_deploy.data.formats.chunk_writes`):
the file must be the one h5py writes, byte for byte where a write covers whole chunks, and the same values anywhere
else, whatever the strips, the edges and the filters."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from dualsr_deploy.data.formats import chunk_writes
from dualsr_deploy.data.formats.chunk_writes import deflate_level, set_threads, write_region
from dualsr_deploy.data.formats.hdf5_layout import HDF5_COMPRESSION
from dualsr_deploy.infer import InferOptions, run_archive
from dualsr_deploy.infer.options import BackendSpec


def _dataset(handle: h5py.File, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], **kwargs: Any) -> Any:
    options = {**HDF5_COMPRESSION, **kwargs}
    return handle.create_dataset(name, shape=shape, dtype="f4", chunks=chunks, fillvalue=-1.0, **options)


def _cube(shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.random(shape[-1:]) * 0.3 + 0.01 * rng.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize(("threads", "encoder"), [(1, "zlib"), (3, "zlib"), (2, "isal")])
def test_whole_chunks_are_stored_as_h5py_stores_them(
    tmp_path: Path, threads: int, encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With zlib, the bytes h5py stores; with ISA-L, a zlib stream of the same shuffled bytes (what every client's
    deflate filter reads)."""
    if encoder == "zlib":
        monkeypatch.setattr(chunk_writes, "ISAL", None)
    elif chunk_writes.ISAL is None:
        pytest.skip("isal is not installed")
    shape, chunks = (96, 80, 7), (32, 32, 7)  # 80 columns: a chunk past the edge on that axis
    cube = _cube(shape)
    before = set_threads(threads)
    try:
        with h5py.File(tmp_path / "ours.h5", "w") as ours, h5py.File(tmp_path / "theirs.h5", "w") as theirs:
            mine, reference = _dataset(ours, "r", shape, chunks), _dataset(theirs, "r", shape, chunks)
            assert deflate_level(mine) == 1
            write_region(mine, (slice(0, 64), slice(None), slice(None)), cube[:64])
            write_region(mine, (slice(64, 96), slice(None), slice(None)), cube[64:])
            reference[...] = cube
            for index in range(reference.id.get_num_chunks()):
                info = reference.id.get_chunk_info(index)
                ours_stored = mine.id.read_direct_chunk(info.chunk_offset)
                theirs_stored = reference.id.read_direct_chunk(info.chunk_offset)
                if encoder == "zlib":
                    assert ours_stored == theirs_stored
                else:
                    assert ours_stored[0] == theirs_stored[0] == 0  # every filter applied
                    assert zlib.decompress(ours_stored[1]) == zlib.decompress(theirs_stored[1])
            np.testing.assert_array_equal(mine[...], cube)
    finally:
        set_threads(before)


def test_strips_off_the_chunk_grid_and_views_keep_every_value(tmp_path: Path) -> None:
    """Strips that start and end inside chunks (merged by HDF5), a transposed view, band-first chunks as the HDF5
    writer lays them: the values read back are the ones written, the rest the fill value."""
    shape = (5, 50, 70)
    cube = _cube(shape[::-1]).transpose(2, 1, 0)  # a view, not contiguous
    with h5py.File(tmp_path / "c.h5", "w") as handle:
        dataset = _dataset(handle, "r", shape, (1, 16, 32))
        for top, bottom in [(0, 1), (1, 17), (17, 40), (43, 50)]:  # rows 40-42 never written
            write_region(dataset, (slice(None), slice(top, bottom), slice(None)), cube[:, top:bottom])
        back = dataset[...]
    np.testing.assert_array_equal(back[:, :40], cube[:, :40])
    np.testing.assert_array_equal(back[:, 43:], cube[:, 43:])
    assert (back[:, 40:43] == -1.0).all()


def test_other_filters_and_dtypes_go_through_h5py(tmp_path: Path) -> None:
    cube = _cube((16, 16, 3))
    with h5py.File(tmp_path / "c.h5", "w") as handle:
        checked = _dataset(handle, "checked", cube.shape, (8, 8, 3), fletcher32=True)
        plain = handle.create_dataset("plain", shape=cube.shape, dtype="f4", chunks=(8, 8, 3), compression="gzip")
        contiguous = handle.create_dataset("contiguous", shape=cube.shape, dtype="f4")
        assert deflate_level(checked) is None
        assert deflate_level(plain) is None
        assert deflate_level(contiguous) is None
        for dataset in (checked, plain, contiguous):
            write_region(dataset, (slice(None), slice(None), slice(None)), cube)
            np.testing.assert_array_equal(dataset[...], cube)
        doubles = _dataset(handle, "doubles", cube.shape, (8, 8, 3))
        write_region(doubles, (slice(None), slice(None), slice(None)), cube.astype(np.float64))  # h5py converts
        np.testing.assert_array_equal(doubles[...], cube)


def test_a_run_compresses_with_its_threads_and_gives_them_back(tmp_path: Path) -> None:
    archive = tmp_path / "lr"
    archive.mkdir()
    cube = np.random.default_rng(0).random((6, 12, 12)).astype(np.float32)
    with h5py.File(archive / "a.h5", "w") as handle:
        handle.create_dataset("cube", data=cube)
    seen: list[int] = []
    original = chunk_writes.threads

    def spy() -> int:
        seen.append(original())
        return seen[-1]

    chunk_writes.threads = spy
    try:
        options = InferOptions(scale=2, stage="coarse", backend=BackendSpec("torch", threads=1), format="h5")
        assert run_archive(archive, tmp_path / "out", options).exit_code == 0
    finally:
        chunk_writes.threads = original
    assert seen
    assert set(seen) == {1}
    assert chunk_writes._threads[0] is None
    with h5py.File(tmp_path / "out" / "a.h5") as handle:
        assert handle["cube"].shape == (6, 24, 24)


def test_writes_of_fewer_rows_get_chunks_no_taller(tmp_path: Path) -> None:
    """A low memory budget writes a few rows at a time: the file's chunks are then no taller, so each write still
    covers whole chunks (h5py would otherwise decompress, merge and compress a chunk for every write touching it)."""
    from dualsr_deploy.data.formats import open_strips
    from dualsr_deploy.data.formats.chunk_writes import chunk_rows
    from dualsr_deploy.data.scene import SceneMeta

    assert [chunk_rows(64, rows) for rows in (None, 64, 200, 63, 23, 16, 1)] == [64, 64, 64, 32, 16, 16, 1]
    meta = SceneMeta(source="x", format="hdf5")
    cube = _cube((40, 30, 4)).transpose(2, 0, 1).copy()  # (C, H, W)
    for rows, height in ((23, 16), (None, 40)):
        path = tmp_path / f"rows{rows}.h5"
        with open_strips(path, cube.shape, meta, {}, rows=rows) as writer:
            assert writer.row_block == height
            for top in range(0, 40, 16):
                writer.write(top, cube[:, top : top + 16])
            writer.commit()
        with h5py.File(path) as handle:
            assert handle["cube"].chunks == (1, height, 30)
            np.testing.assert_array_equal(handle["cube"][...], cube)
