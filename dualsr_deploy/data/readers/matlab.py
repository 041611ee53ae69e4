"""MATLAB ``.mat`` files: v5 through scipy.io (one variable loaded), v7.3 through h5py (lazy).

Besides H×W×C cubes, v5 files in the layout of the hyperspectral-unmixing data sets (Jasper Ridge, Moffett Field,
Samson, Urban …) are read: a 2-D ``Y`` of bands × pixels in MATLAB's column order, with the image size in scalar
``nRow``/``nCol`` (or ``H``/``W``), and an optional scalar ``maxValue`` that the data are divided by.
"""

from __future__ import annotations

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
