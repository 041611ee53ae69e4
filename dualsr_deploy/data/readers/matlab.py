"""MATLAB ``.mat`` files: v5 through scipy.io (one variable loaded), v7.3 through h5py (lazy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


class MatV5Reader(SceneReader):
    """A MATLAB v5 file. Variables are H×W×C by MATLAB convention (``layout`` in MATLAB's axis order)."""

    format = "mat-v5"

    def __init__(self, path: Path, *, key: str | None = None, layout: str | None = None) -> None:
        import scipy.io

        with reading(path):
            listing = scipy.io.whosmat(str(path))
        arrays = {
            name: (tuple(shape), np.dtype(_MATLAB_CLASSES[cls]))
            for name, shape, cls in listing
            if cls in _MATLAB_CLASSES
        }
        chosen, note = choose_key(path, arrays, key)
        super().__init__(path, path.stem, key=chosen, layout=check_layout(layout or "hwc", path))
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
        return read_window(self._array, self.layout, window)

    def close(self) -> None:
        super().close()
        self._array = None
