"""NumPy files: ``.npy`` (memory-mapped, so windows are read lazily) and ``.npz`` (one array loaded)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dualsr_deploy.data.confine import Confinement
from dualsr_deploy.data.readers.base import (
    SceneReader,
    check_layout,
    chw_shape,
    read_window,
    reading,
    restore_written_meta,
)
from dualsr_deploy.data.readers.hdf5 import choose_key
from dualsr_deploy.data.scene import Window


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of an ``.npz``'s members from their headers, without loading any data."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            arrays[info.filename.removesuffix(".npy")] = (tuple(shape), np.dtype(dtype))
    return arrays


def sidecar(path: Path) -> Path:
    """Where metadata for a format that cannot hold it (``.npy``) is kept: ``<file>.json`` beside it."""
    return path.with_name(path.name + ".json")


class NpyReader(SceneReader):
    format = "npy"

    def __init__(
        self, path: Path, *, key: str | None = None, layout: str | None = None, confine: Confinement | None = None
    ) -> None:
        with reading(path):
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        arrays = {"array": (tuple(self._array.shape), self._array.dtype)}
        choose_key(path, arrays, None if key is None else "array")
        super().__init__(path, path.stem, layout=check_layout(layout or "chw", path), confine=confine)
        meta_file = self.claim_if_present(sidecar(path), "metadata sidecar")
        if meta_file is not None:
            with reading(meta_file):
                text = meta_file.read_text()
            restore_written_meta(self, text)

    @property
    def shape(self) -> tuple[int, int, int]:
        return chw_shape(self._array.shape, self.layout)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    def _read(self, window: Window | None) -> np.ndarray:
        # a copy: a view of the memory map would outlive close() and crash whoever reads it then
        return np.array(read_window(self._array, self.layout, window), copy=True)

    def close(self) -> None:
        super().close()
        mmap = getattr(self._array, "_mmap", None)
        if mmap is not None:
            mmap.close()


class NpzReader(SceneReader):
    format = "npz"

    def __init__(
        self, path: Path, *, key: str | None = None, layout: str | None = None, confine: Confinement | None = None
    ) -> None:
        with reading(path):
            arrays = _npz_headers(path)
        chosen, note = choose_key(path, arrays, key)
        layout = check_layout(layout or "chw", path)
        super().__init__(path, path.stem, key=chosen, layout=layout, confine=confine)
        self.notes.append(note)
        self._stored_shape, self._dtype = arrays[chosen]

    @property
    def shape(self) -> tuple[int, int, int]:
        return chw_shape(self._stored_shape, self.layout)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._dtype)

    def _read(self, window: Window | None) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as archive:
            return read_window(archive[self.key], self.layout, window)
