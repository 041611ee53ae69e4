"""Writing a cube too large to hold whole: row strips into an HDF5 dataset or a ``.npy`` file, made atomic.

The file is written under a temporary name and renamed only by :meth:`ChunkedWriter.commit`, so a run that stops
half-way leaves no partial file under the final name. What is written reads back with :func:`read_scene` like a
file of :func:`write_scene` (same dataset name, attributes and metadata sidecar).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from dualsr_deploy.atomic import _default_mode
from dualsr_deploy.data.scene import SceneMeta
from dualsr_deploy.data.validity import representable
from dualsr_deploy.errors import DataError

CHUNKED_SUFFIXES = (".h5", ".hdf5", ".npy")


class ChunkedWriter:
    """``(C, H, W)`` written strip by strip: ``write(first_row, rows)``, then ``commit()``. ``dtype``: float32
    (normalised units) or the source's (``units="source"``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        shape: tuple[int, int, int],
        meta: SceneMeta,
        attrs: Mapping[str, str],
        *,
        dtype: str = "float32",
        units: str = "normalised",
    ) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in CHUNKED_SUFFIXES:
            raise DataError(
                f"{self.path}: a scene this large is written strip by strip, which {self.suffix or 'this format'} "
                f"cannot take; choose --format h5 or npy"
            )
        self.shape = shape
        self.units = units
        self.meta = meta.replace(attrs={**meta.attrs, **attrs, "dualsr_units": units})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(handle)
        self.tmp = Path(name)
        self._file: Any = None
        self._data: Any = None
        _c, h, w = shape
        if self.suffix == ".npy":
            self._data = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.dtype(dtype), shape=shape)
        else:
            import h5py

            self._file = h5py.File(self.tmp, "w")
            self._data = self._file.create_dataset(
                "cube",
                shape=shape,
                dtype=np.dtype(dtype),
                chunks=(1, min(h, 256), min(w, 256)),
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )

    def write(self, first_row: int, rows: np.ndarray) -> None:
        self._data[:, first_row : first_row + rows.shape[1]] = rows

    def commit(self) -> Path:
        meta_json = self.meta.to_json()
        if self.suffix == ".npy":
            from dualsr_deploy.atomic import atomic_output
            from dualsr_deploy.data.readers.numpy_files import sidecar

            self._data.flush()
            del self._data
            self._data = None
            with atomic_output(sidecar(self.path)) as meta_tmp:
                meta_tmp.write_text(meta_json)
        else:
            dataset = self._data
            dataset.attrs["layout"] = "chw"
            dataset.attrs["units"] = self.units
            dataset.attrs["dualsr_scene"] = meta_json
            for key, value in self.meta.attrs.items():
                dataset.attrs[key] = value
            if self.meta.wavelengths is not None:
                dataset.attrs["wavelengths"] = np.asarray(self.meta.wavelengths, dtype=np.float64)
            if self.meta.fwhm is not None:
                dataset.attrs["fwhm"] = np.asarray(self.meta.fwhm, dtype=np.float64)
            if self.meta.nodata is not None and representable(self.meta.nodata, dataset.dtype):
                dataset.attrs["_FillValue"] = np.asarray(self.meta.nodata, dtype=dataset.dtype)
            if self.meta.bad_bands:
                dataset.attrs["bad_bands"] = np.asarray(self.meta.bad_bands, dtype=np.int32)
            self._file.close()
            self._file = None
        os.chmod(self.tmp, _default_mode())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._data = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ChunkedWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.tmp.exists():
            self.abort()
