"""Compressed HDF5 cubes written by whole chunks, compressed in threads.

h5py compresses every chunk of a write in the calling thread. Writing a 256 × 2560 × 285 float32 block (a 128-line
EMIT strip at ×2, 747 MB) into this package's layout (64 × 64 × 285 chunks, byte shuffle and gzip level 1) took
14.3 s that way, and 6.5 s with the chunks shuffled and deflated here by two threads (zlib lets go of the GIL) and
stored as they are with HDF5's direct chunk write (2-core Xeon, ``/tmp`` on local disk, same bytes stored).

:func:`write_region` takes this path for the chunks a write covers whole (or up to the dataset's edge) when the
dataset's filters are exactly byte shuffle then deflate, as :data:`HDF5_COMPRESSION` makes them; any other
chunk, and any other dataset, goes through h5py as before. HDF5 stores a chunk the same whichever wrote it, so every
client reads it the same. A run sets the threads (:func:`set_threads`) from ``--threads``; until then, and outside
runs, the CPUs this process may use.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

FILTER_DEFLATE, FILTER_SHUFFLE = 1, 2  # HDF5's filter identifiers (H5Z_FILTER_DEFLATE, H5Z_FILTER_SHUFFLE)
IN_FLIGHT = 4  # chunks per thread compressed ahead of the one being stored: memory stays a few chunks
_threads: list[int | None] = [None]

Region = tuple[slice, ...]


def set_threads(count: int | None) -> int | None:
    """Threads that compress chunks from now on (None: the CPUs this process may use); returns the previous."""
    before, _threads[0] = _threads[0], count
    return before


def threads() -> int:
    if _threads[0] is not None:
        return max(1, _threads[0])
    from dualsr_deploy.resources import usable_cpus

    return usable_cpus()


def deflate_level(dataset: Any) -> int | None:
    """The gzip level of a dataset whose filters are exactly byte shuffle then deflate; None for any other."""
    plist = dataset.id.get_create_plist()
    if dataset.chunks is None or plist.get_nfilters() != 2 or dataset.dtype.kind not in "fiu":
        return None
    first, (second, _, values, *_) = plist.get_filter(0)[0], plist.get_filter(1)
    if (first, second) != (FILTER_SHUFFLE, FILTER_DEFLATE) or not dataset.dtype.isnative:
        return None
    return int(values[0]) if values else None


def write_region(dataset: Any, region: Region, values: np.ndarray) -> None:
    """``dataset[region] = values`` (``region``: one slice per axis, steps of 1; ``values`` may be any view):
    chunks covered whole compressed in threads and stored directly, the others through h5py."""
    level = deflate_level(dataset)
    bounds = [(s.start or 0, dataset.shape[axis] if s.stop is None else s.stop) for axis, s in enumerate(region)]
    if level is None or values.dtype != dataset.dtype or values.shape != tuple(b - a for a, b in bounds):
        dataset[region] = values
        return
    whole, partial = _split(dataset.shape, dataset.chunks, bounds)
    for corner in partial:  # chunks the write covers in part: HDF5 reads, merges and compresses them
        inside = tuple(
            slice(max(c, a), min(c + n, b)) for c, n, (a, b) in zip(corner, dataset.chunks, bounds, strict=True)
        )
        dataset[inside] = values[
            tuple(slice(s.start - a, s.stop - a) for s, (a, _) in zip(inside, bounds, strict=True))
        ]
    if not whole:
        return
    chunk, dtype, fill = tuple(dataset.chunks), dataset.dtype, dataset.fillvalue

    def compress(corner: tuple[int, ...]) -> tuple[tuple[int, ...], bytes]:
        block = np.full(chunk, fill, dtype)  # a chunk past the dataset's edge is stored whole, padded as HDF5 pads it
        taken = tuple(
            slice(c - a, min(c + n, shape) - a)
            for c, n, (a, _), shape in zip(corner, chunk, bounds, dataset.shape, strict=True)
        )
        part = values[taken]
        block[tuple(slice(0, extent) for extent in part.shape)] = part
        shuffled = block.view(np.uint8).reshape(-1, dtype.itemsize).T.copy()  # HDF5's byte shuffle
        return corner, zlib.compress(shuffled.data, level)

    with ThreadPoolExecutor(threads()) as pool:
        for stored in _in_order(pool, compress, whole, IN_FLIGHT * threads()):
            dataset.id.write_direct_chunk(*stored)


def _split(
    shape: tuple[int, ...], chunks: tuple[int, ...], bounds: list[tuple[int, int]]
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """The corners of the chunks a region touches: those it covers whole (to the dataset's edge), and the others."""
    whole: list[tuple[int, ...]] = []
    partial: list[tuple[int, ...]] = []
    axes = [range((a // n) * n, b, n) for (a, b), n in zip(bounds, chunks, strict=True)]
    for corner in itertools.product(*axes):
        covered = all(
            c >= a and min(c + n, size) <= b for c, n, (a, b), size in zip(corner, chunks, bounds, shape, strict=True)
        )
        (whole if covered else partial).append(corner)
    return whole, partial


def _in_order(pool: ThreadPoolExecutor, work: Any, items: list[Any], ahead: int) -> Iterator[Any]:
    """``work(item)`` for each item, in order, at most ``ahead`` of them running or done and not yet taken."""
    pending = [pool.submit(work, item) for item in items[:ahead]]
    for index in range(len(items)):
        result = pending.pop(0).result()
        if index + ahead < len(items):
            pending.append(pool.submit(work, items[index + ahead]))
        yield result


__all__ = ["deflate_level", "set_threads", "write_region"]
