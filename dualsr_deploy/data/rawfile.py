"""Fixed-size binary files written and read at offsets (``os.pwrite``/``os.preadv``), never memory-mapped (written
pages of a map count against the process until the kernel writes them back): the streamed pipeline's intermediates
(:class:`RowStore`) and the data files the strip writers fill."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dualsr_deploy.errors import DataError


class RawFile:
    """A fixed-size binary file written at offsets (``os.pwrite``): no memory map, nothing kept."""

    def __init__(self, path: Path, size: int, offset: int = 0) -> None:
        self.path, self.offset = path, offset
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self.fd, offset + size)

    def put(self, position: int, values: np.ndarray) -> None:
        view = np.ascontiguousarray(values).data.cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(self.fd, view[done:], self.offset + position + done)

    def get(self, position: int, count: int, dtype: np.dtype) -> np.ndarray:
        buffer = bytearray(count * dtype.itemsize)
        done = 0
        while done < len(buffer):
            got = os.preadv(self.fd, [memoryview(buffer)[done:]], self.offset + position + done)
            if got == 0:
                raise DataError(f"{self.path}: ended {len(buffer) - done} bytes early")
            done += got
        return np.frombuffer(buffer, dtype=dtype)

    def close(self) -> None:
        """Flush to disk and close (a finished file)."""
        if self.fd >= 0:
            os.fsync(self.fd)
            self.discard()

    def discard(self) -> None:
        """Close without flushing (scratch, or a file about to be removed)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class RowStore:
    """A ``(C, H, W)`` array on disk in row-major order (each row's bands together), read and written by rows: the
    streamed pipeline's intermediates."""

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype | str = "float32") -> None:
        self.shape, self.dtype = shape, np.dtype(dtype)
        c, h, w = shape
        self.row_bytes = c * w * self.dtype.itemsize
        self.file = RawFile(path, h * self.row_bytes)

    def write(self, first_row: int, rows: np.ndarray) -> None:
        self.file.put(first_row * self.row_bytes, np.transpose(rows.astype(self.dtype, copy=False), (1, 0, 2)))

    def read(self, start: int, stop: int) -> np.ndarray:
        c, _h, w = self.shape
        flat = self.file.get(start * self.row_bytes, (stop - start) * c * w, self.dtype)
        return flat.reshape(stop - start, c, w).transpose(1, 0, 2)

    def close(self) -> None:
        self.file.discard()


__all__ = ["RawFile", "RowStore"]
