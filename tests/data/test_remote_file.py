"""The ranged file object h5py reads remote NetCDF/HDF5 through (dualsr_deploy/data/remote_file.py): the bytes it
gives are the object's, every range is fetched in the thread that reads (the property that keeps h5py's global
lock from waiting on another thread), it keeps a bounded number of blocks, and a short answer is an error."""

from __future__ import annotations

import gc
import io
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from dualsr_deploy.data.remote_file import Blocks, RangeFile, range_file, release
from dualsr_deploy.errors import RemoteError
from tests.servers import http_server


def over(data: bytes, block: int = 1000, kept: int = 3) -> tuple[RangeFile, list[tuple[int, int, int]]]:
    calls: list[tuple[int, int, int]] = []  # (start, stop, thread)

    def fetch(start: int, stop: int) -> bytes:
        calls.append((start, stop, threading.get_ident()))
        return data[start:stop]

    return RangeFile(Blocks("s3://bucket/key", len(data), fetch, block_size=block, kept=kept)), calls


def test_reads_are_the_objects_bytes_fetched_in_the_reading_thread() -> None:
    data = np.random.default_rng(0).integers(0, 256, 12_345, dtype=np.uint8).tobytes()
    file, calls = over(data)
    rng = np.random.default_rng(1)
    for _ in range(200):
        start = int(rng.integers(0, len(data) + 50))
        length = int(rng.integers(0, 3000))
        file.seek(start)
        assert file.read(length) == data[start : start + length]
    file.seek(-10, io.SEEK_END)
    assert file.read() == data[-10:]
    assert {thread for _start, _stop, thread in calls} == {threading.get_ident()}
    assert len(file.blocks._blocks) <= 3  # the least recently used blocks were dropped
    assert all(stop - start <= 1000 for start, stop, _thread in calls)


def test_files_open_on_one_object_share_its_blocks_with_positions_of_their_own() -> None:
    data = bytes(range(256)) * 40
    first, calls = over(data, block=1000, kept=16)
    second = RangeFile(first.blocks)
    first.seek(100)
    second.seek(5000)
    assert first.read(50) == data[100:150]
    assert second.read(50) == data[5000:5050]
    assert first.read(10) == data[150:160]  # its own position
    second.seek(120)
    assert second.read(10) == data[120:130]
    assert [start for start, _stop, _thread in calls] == [0, 5000]  # each block fetched once


def test_a_short_answer_is_an_error_not_a_short_file() -> None:
    data = bytes(range(256)) * 10
    file = RangeFile(Blocks("s3://bucket/key", len(data), lambda start, stop: data[start : stop - 1], block_size=100))
    with pytest.raises(RemoteError, match="got 99 bytes"):
        file.read(10)


def test_h5py_reads_through_it_while_other_threads_collect_garbage(tmp_path: Path) -> None:
    """h5py opens and reads a file through it while another thread keeps creating and collecting cycles holding
    h5py objects: every read is made by the reading thread, so the collector waits for h5py's lock, never the
    other way round, and the reads end."""
    cube = np.random.default_rng(2).random((31, 40, 40), dtype=np.float32)
    with h5py.File(tmp_path / "s.h5", "w") as handle:
        handle.create_dataset("cube", data=cube, chunks=(31, 8, 8))
    data = (tmp_path / "s.h5").read_bytes()
    file, calls = over(data, block=4096, kept=4)
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            with h5py.File(tmp_path / "s.h5", "r") as other:
                cycle: list[object] = [other["cube"]]
                cycle.append(cycle)
            gc.collect()

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    result: list[np.ndarray] = []
    reader = threading.Thread(target=lambda: result.append(h5py.File(file, "r")["cube"][:]), daemon=True)
    reader.start()
    reader.join(timeout=60)
    stop.set()
    collector.join(timeout=60)
    assert not reader.is_alive(), "the read did not end"
    assert np.array_equal(result[0], cube)
    assert {thread for _start, _stop, thread in calls} == {reader.ident}


def test_over_http_it_sends_ranges_and_a_missing_object_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(bytes(range(256)) * 100)
    with http_server(tmp_path) as (base, log):
        file = range_file(base + "a.bin")
        assert file.size == 25_600
        file.seek(25_000)
        assert file.read(600) == (bytes(range(256)) * 100)[25_000:]
        with pytest.raises(RemoteError, match="not found"):
            range_file(base + "missing.bin")
        sent = log.sent
        again = range_file(base + "a.bin")  # opened again (the reader after the probe): the blocks are kept
        assert again.read(100) == (bytes(range(256)) * 100)[:100]
        assert log.sent - sent <= 1  # only the size was asked for again
        (tmp_path / "a.bin").write_bytes(bytes(range(255, -1, -1)) * 100)  # replaced: another ETag, read afresh
        assert range_file(base + "a.bin").read(3) == bytes([255, 254, 253])
        release(base + "a.bin")  # its scene ended: its blocks are dropped, and a later open fetches them again
        sent = log.sent
        assert range_file(base + "a.bin").read(3) == bytes([255, 254, 253])
        assert log.sent - sent > 1000
    assert all(byte_range is not None for method, _path, byte_range in log.requests if method == "GET")


def test_over_http_a_server_without_ranges_and_an_object_replaced_mid_read_are_refused(tmp_path: Path) -> None:
    """A server that answers a range with the whole object is refused (its body is not read into memory), and an
    object replaced while it is read fails the read (If-Range) rather than mixing bytes of two versions."""
    (tmp_path / "a_norange.bin").write_bytes(bytes(4096))
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 100)
    with http_server(tmp_path) as (base, _log):
        with pytest.raises(RemoteError, match="serves no byte ranges"):
            range_file(base + "a_norange.bin")
        file = range_file(base + "b.bin")
        file.blocks.block_size = 1000  # small blocks, so that the second read is another request
        assert file.read(10) == bytes(range(10))
        (tmp_path / "b.bin").write_bytes(bytes(range(255, -1, -1)) * 100)
        file.seek(20_000)
        with pytest.raises(RemoteError, match="changed while it was being read"):
            file.read(10)
