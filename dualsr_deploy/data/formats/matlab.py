"""MATLAB ``.mat`` files: v5 through scipy.io (one variable loaded), v7.3 through h5py (lazy); written as v5
(scipy) or v7.3 (HDF5 by hyperslabs).

Besides H×W×C cubes, v5 files in the layout of the hyperspectral-unmixing data sets (Jasper Ridge, Moffett Field,
Samson, Urban …) are read: a 2-D ``Y`` of bands × pixels in MATLAB's column order, with the image size in scalar
``nRow``/``nCol`` (or ``H``/``W``), and an optional scalar ``maxValue`` that the data are divided by.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.data.confine import Confinement
from dualsr_deploy.data.formats.chunk_writes import chunk_rows, write_region
from dualsr_deploy.data.formats.hdf5 import MatV73Reader, choose_key
from dualsr_deploy.data.formats.hdf5_layout import HDF5_COMPRESSION, MATLAB_CLASS, mat_header, matlab_provenance
from dualsr_deploy.data.formats.reader import (
    SceneReader,
    check_layout,
    chw_shape,
    read_window,
    reading,
    restore_written_meta,
)
from dualsr_deploy.data.formats.row import HDF5_MAGIC, Format, Probe, WriteOptions
from dualsr_deploy.data.formats.strips import StripWriter
from dualsr_deploy.data.scene import SceneMeta, Window
from dualsr_deploy.errors import DataError

MAT_V5_LIMIT = 2**31 - 1  # MATLAB v5 cannot hold a variable of 2 GB or more

_MATLAB_CLASSES = {
    "double": np.float64,
    "single": np.float32,
    "uint8": np.uint8,
    "int8": np.int8,
    "uint16": np.uint16,
    "int16": np.int16,
    "uint32": np.uint32,
    "int32": np.int32,
    "uint64": np.uint64,
    "int64": np.int64,
    "logical": np.bool_,
}


UNMIXING_SIZES = (("nRow", "nCol"), ("H", "W"))  # scalar image-size variables of the unmixing data sets


def unmixing_layout(path: Path, listing: list[tuple[str, tuple[int, ...], str]]) -> tuple[int, int, int] | None:
    """``(bands, rows, columns)`` when ``path`` holds a 2-D ``Y`` (bands × rows·columns, bands ≥ 5) and scalar
    image sizes that match it; else None."""
    import scipy.io

    shapes = shapes_of(listing)
    if len(shapes.get("Y", ())) != 2:
        return None
    bands, pixels = shapes["Y"]
    for row_name, col_name in UNMIXING_SIZES:
        if shapes.get(row_name) == (1, 1) and shapes.get(col_name) == (1, 1):
            with reading(path):
                sizes = scipy.io.loadmat(str(path), variable_names=[row_name, col_name])
            rows, cols = int(np.ravel(sizes[row_name])[0]), int(np.ravel(sizes[col_name])[0])
            if rows * cols == pixels and bands >= 5:
                return bands, rows, cols
    return None


def shapes_of(listing: list[tuple[str, tuple[int, ...], str]]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(shape) for name, shape, _cls in listing}


class MatV5Reader(SceneReader):
    """A MATLAB v5 file. Variables are H×W×C by MATLAB convention (``layout`` in MATLAB's axis order)."""

    format = "mat-v5"

    def __init__(
        self, path: Path, *, key: str | None = None, layout: str | None = None, confine: Confinement | None = None
    ) -> None:
        import scipy.io

        with reading(path):
            listing = scipy.io.whosmat(str(path))
        arrays = {
            name: (tuple(shape), np.dtype(_MATLAB_CLASSES[cls]))
            for name, shape, cls in listing
            if cls in _MATLAB_CLASSES
        }
        self._unmixing = unmixing_layout(path, listing) if key in (None, "Y") else None
        cubes = [shape for shape, _dtype in arrays.values() if len(shape) == 3]
        if self._unmixing is not None and all(min(shape) < self._unmixing[0] for shape in cubes):
            # Y holds more bands than any 3-D array (those are abundance maps): the unmixing layout.
            bands, rows, cols = self._unmixing
            super().__init__(path, path.stem, key="Y", layout="chw", confine=confine)
            self.notes.append(
                f"array 'Y' ({bands} bands × {rows * cols} pixels, MATLAB column order) read as {rows}×{cols}: the "
                "unmixing data sets' layout"
            )
            self._stored_shape, self._dtype = (bands, rows, cols), arrays["Y"][1]
            if shapes_of(listing).get("maxValue") == (1, 1):
                with reading(path):
                    top = scipy.io.loadmat(str(path), variable_names=["maxValue"])["maxValue"]
                if float(np.ravel(top)[0]) > 0:
                    self.declared_scale = float(np.ravel(top)[0])
                    self.notes.append(f"divided by its maxValue {self.declared_scale:g}")
        else:
            self._unmixing = None
            chosen, note = choose_key(path, arrays, key)
            super().__init__(path, path.stem, key=chosen, layout=check_layout(layout or "hwc", path), confine=confine)
            self.notes.append(note)
            self._stored_shape, self._dtype = arrays[chosen]
        self._array: np.ndarray | None = None
        if any(name == "dualsr_scene" for name, _, _ in listing):
            with reading(path):
                stored = scipy.io.loadmat(str(path), variable_names=["dualsr_scene"])["dualsr_scene"]
            restore_written_meta(self, str(np.ravel(stored)[0]))

    @property
    def shape(self) -> tuple[int, int, int]:
        return chw_shape(self._stored_shape, self.layout)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _read(self, window: Window | None) -> np.ndarray:
        import scipy.io

        assert self.key is not None
        if self._array is None:  # v5 has no partial reads: load the variable once, window from memory
            self._array = scipy.io.loadmat(str(self.path), variable_names=[self.key])[self.key]
            if self._unmixing is not None:  # pixel n = row + column·rows (MATLAB's column order)
                bands, rows, cols = self._unmixing
                self._array = np.ascontiguousarray(self._array.reshape(bands, cols, rows).transpose(0, 2, 1))
        return read_window(self._array, self.layout, window)

    def close(self) -> None:
        super().close()
        self._array = None


class MatV73Strips(StripWriter):
    """MATLAB v7.3: HDF5 behind a 512-byte MATLAB header, the cube stored ``(C, W, H)`` (MATLAB's reversed axes of
    ``H × W × C``), so a strip of rows is a hyperslab on the last axis."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, options: WriteOptions
    ) -> None:
        super().__init__(path, shape, dtype, meta, options)
        with self._removed_on_error():
            import h5py

            matlab_class = MATLAB_CLASS.get(str(self.dtype))
            if matlab_class is None:
                raise DataError(f"{path}: cannot write {self.dtype} to MATLAB v7.3")
            c, h, w = shape
            self.file: Any = h5py.File(self._hdf5_target(), "w", userblock_size=512)
            self.row_block = min(h, chunk_rows(256, options.rows))
            self.cube = self.file.create_dataset(
                "cube", shape=(c, w, h), dtype=self.dtype, chunks=(1, min(w, 256), self.row_block), **HDF5_COMPRESSION
            )
            self.cube.attrs["MATLAB_class"] = np.bytes_(matlab_class)

    def write(self, first_row: int, rows: np.ndarray) -> None:
        region = (slice(None), slice(None), slice(first_row, first_row + rows.shape[1]))
        write_region(self.cube, region, np.transpose(rows, (0, 2, 1)))

    def _finish(self) -> None:
        matlab_provenance(self.file, self.meta.to_json())
        self._close()
        memory = getattr(self, "memory", None)
        if memory is not None:
            header = mat_header()
            memory.getbuffer()[: len(header)] = header
            written = self._hdf5_written()
        else:
            written = self._hdf5_written()
            with written.open("r+b") as handle:
                handle.write(mat_header())
        self._publish(written, self.path)


class MatV5Strips(StripWriter):
    """MATLAB v5 (scipy): a format without partial writes, so the strips are gathered and the file written at the
    end; only whole scenes are written so (a streamed scene is written as v7.3)."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, options: WriteOptions
    ) -> None:
        super().__init__(path, shape, dtype, meta, options)
        self.cube: np.ndarray | None = None

    def write(self, first_row: int, rows: np.ndarray) -> None:
        if first_row == 0 and rows.shape == self.shape and self.cube is None:  # a whole scene: no copy of it
            self.cube = rows.astype(self.dtype, copy=False)
            return
        if self.cube is None:
            self.cube = np.empty(self.shape, self.dtype)
        self.cube[:, first_row : first_row + rows.shape[1]] = rows

    def _finish(self) -> None:
        import scipy.io

        if self.cube is None:
            raise DataError(f"{self.path}: no rows were written")
        written = self.staging / self.path.name
        with written.open("wb") as handle:
            scipy.io.savemat(
                handle,
                {"cube": np.transpose(self.cube, (1, 2, 0)), "dualsr_scene": self.meta.to_json()},
                do_compression=True,
                oned_as="column",
            )
        self._publish(written, self.path)


def mat_strips(
    path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, options: WriteOptions
) -> StripWriter:
    """v5 for whole scenes under 2 GB, v7.3 past it and for scenes written in strips (``mat_version`` decides when
    given; v5 refuses a cube it cannot hold)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    version = options.mat_version or ("5" if options.whole and nbytes <= MAT_V5_LIMIT else "7.3")
    if version not in ("5", "7.3"):
        raise DataError(f"mat_version must be '5' or '7.3', not {version!r}")
    if version == "5" and nbytes > MAT_V5_LIMIT:
        raise DataError(f"{path}: {nbytes / 2**30:.1f} GiB does not fit MATLAB v5; use mat_version='7.3'")
    return (MatV5Strips if version == "5" else MatV73Strips)(path, shape, dtype, meta, options)


def _sniff_v73(probe: Probe) -> bool:
    return (probe.head.startswith(b"MATLAB") and probe.at_512 == HDF5_MAGIC) or (
        probe.head == HDF5_MAGIC and probe.suffix == ".mat"
    )


def _sniff_v5(probe: Probe) -> bool:
    return probe.head.startswith(b"MATLAB") and probe.at_512 != HDF5_MAGIC


def _sniff_v4(probe: Probe) -> bool:
    """MATLAB v4 files have no text header (scipy reads them): a ``.mat`` no other format claimed."""
    return probe.suffix == ".mat"


MAT_V73 = Format(
    "mat-v7.3", "MATLAB v7.3 (HDF5 inside)", sniff=_sniff_v73, reader=MatV73Reader, keyed=True, output=".mat"
)
MAT_V5 = Format(
    "mat-v5",
    "MATLAB v5 (v7.3 past 2 GB or when streamed)",
    sniff=_sniff_v5,
    reader=MatV5Reader,
    scene_suffixes=(".mat",),
    keyed=True,
    output=".mat",
    option="mat",
    writes=(".mat",),
    strips=mat_strips,
    streamed_note="streamed, so written as MATLAB v7.3 (v5 cannot be written in strips)",
)
MAT_V4 = dataclasses.replace(
    MAT_V5, sniff=_sniff_v4, option=None, writes=(), strips=None, scene_suffixes=(), streamed_note=None
)
