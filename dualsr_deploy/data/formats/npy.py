"""NumPy files: ``.npy`` (memory-mapped, so windows are read lazily; written at offsets) and ``.npz`` (one array
loaded)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.data.confine import Confinement
from dualsr_deploy.data.formats.hdf5 import choose_key
from dualsr_deploy.data.formats.reader import (
    SceneReader,
    check_layout,
    chw_shape,
    read_window,
    reading,
    restore_written_meta,
)
from dualsr_deploy.data.formats.row import Format, WriteOptions
from dualsr_deploy.data.formats.strips import StripWriter
from dualsr_deploy.data.rawfile import RawFile
from dualsr_deploy.data.scene import SceneMeta, Window


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


class NpyStrips(StripWriter):
    """``.npy`` (``(C, H, W)``, format 1.0 header) written at its offsets, with the metadata in ``<name>.npy.json``."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, options: WriteOptions
    ) -> None:
        super().__init__(path, shape, dtype, meta, options)
        with self._removed_on_error():
            header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
            written = self.staging / path.name
            with written.open("wb") as handle:
                np.lib.format.write_array_header_1_0(handle, header)
                offset = handle.tell()
            c, h, w = shape
            self.raw = RawFile(written, c * h * w * self.dtype.itemsize, offset)

    def write(self, first_row: int, rows: np.ndarray) -> None:
        c, h, w = self.shape
        size = self.dtype.itemsize
        for band in range(c):
            self.raw.put((band * h + first_row) * w * size, rows[band].astype(self.dtype, copy=False))

    def _finish(self) -> None:
        self.raw.close()
        with atomic_output(sidecar(self.path)) as meta_tmp:
            meta_tmp.write_text(self.meta.to_json())
        self._publish(self.staging / self.path.name, self.path)


NPY = Format(
    "npy",
    "NumPy .npy (metadata in <name>.npy.json)",
    sniff=lambda probe: probe.head.startswith(b"\x93NUMPY"),
    reader=NpyReader,
    scene_suffixes=(".npy",),
    keyed=True,
    output=".npy",
    option="npy",
    writes=(".npy",),
    strips=NpyStrips,
    files=lambda output: [output, sidecar(output)],
    uncompressed=True,
)
NPZ = Format(
    "npz",
    "NumPy .npz (one array loaded)",
    sniff=lambda probe: probe.head.startswith(b"PK\x03\x04") and probe.suffix == ".npz",
    reader=NpzReader,
    scene_suffixes=(".npz",),
    keyed=True,
    output=".npy",
)
