"""HDF5 files (``.h5``): read lazily through h5py (MATLAB v7.3 files too: HDF5 inside), written by strips.

MATLAB writes arrays column-major, so h5py sees their axes reversed: an H×W×C variable reads as (C, W, H).
Layouts given for MATLAB files are MATLAB's own (default ``hwc``) and reversed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dualsr_deploy.data.confine import Confinement, check_hdf5_self_contained
from dualsr_deploy.data.formats.chunk_cache import open_for_reading
from dualsr_deploy.data.formats.chunk_writes import chunk_rows, write_region
from dualsr_deploy.data.formats.hdf5_layout import HDF5_COMPRESSION
from dualsr_deploy.data.formats.reader import (
    SceneReader,
    check_layout,
    chw_shape,
    numeric_3d,
    read_window,
    reading,
    restore_written_meta,
)
from dualsr_deploy.data.formats.row import Format, Probe, WriteOptions
from dualsr_deploy.data.formats.strips import StripWriter
from dualsr_deploy.data.metadata import number, numbers, small_array
from dualsr_deploy.data.scene import SceneMeta, Window
from dualsr_deploy.data.validity import representable
from dualsr_deploy.errors import DataError


def cube_datasets(handle: Any) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Every numeric dataset in an open h5py file: path → (shape, dtype)."""
    import h5py

    found: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and item.dtype.kind in "uifb":
            found[name] = (tuple(item.shape), item.dtype)

    handle.visititems(visit)
    return found


def choose_key(path: Path, arrays: dict[str, tuple[tuple[int, ...], np.dtype]], key: str | None) -> tuple[str, str]:
    """The variable to read and a note saying why; clear errors for a wrong key or no 3-D array."""
    listing = ", ".join(f"{name!r} {'×'.join(map(str, shape))} {dtype}" for name, (shape, dtype) in arrays.items())
    if key is not None:
        key = key.lstrip("/")
        if key not in arrays:
            raise DataError(f"{path}: no array {key!r} in this file; it has: {listing or 'no numeric arrays'}")
        shape, dtype = arrays[key]
        if not numeric_3d(shape, dtype):
            raise DataError(f"{path}: {key!r} is {len(shape)}-D {dtype}; a cube needs 3 axes (bands, rows, columns)")
        return key, f"array {key!r} as asked"
    cubes = {name: value for name, value in arrays.items() if numeric_3d(*value)}
    if not cubes:
        raise DataError(
            f"{path}: holds no 3-D numeric array (bands × rows × columns); it has: {listing or 'nothing numeric'}"
        )
    chosen = max(cubes, key=lambda name: int(np.prod(cubes[name][0])))
    others = [name for name in cubes if name != chosen]
    note = f"array {chosen!r} chosen: the largest 3-D numeric array"
    return chosen, note + (f" (others: {', '.join(map(repr, others))}; pass a key to pick one)" if others else "")


class Hdf5Reader(SceneReader):
    format = "hdf5"
    matlab: ClassVar[bool] = False

    def __init__(
        self, path: Path, *, key: str | None = None, layout: str | None = None, confine: Confinement | None = None
    ) -> None:
        with reading(path):
            self._file = open_for_reading(path)
        try:
            check_hdf5_self_contained(self._file, path)
            arrays = cube_datasets(self._file)
            chosen, note = choose_key(path, arrays, key)
            if self.matlab:
                stated_layout = check_layout(layout or "hwc", path)
                file_layout = stated_layout[::-1]
            else:
                stated_layout = file_layout = check_layout(layout or self._stored_layout(chosen) or "chw", path)
            super().__init__(path, path.stem, key=chosen, layout=stated_layout, confine=confine)
            self.notes.append(note)
            self._dataset = self._file[chosen]
            self._file_layout = file_layout
            self._shape = chw_shape(self._dataset.shape, file_layout)
            self._read_attrs()
        except BaseException:
            self._file.close()
            raise

    def _stored_layout(self, key: str) -> str | None:
        value = self._file[key].attrs.get("layout")
        return value.decode() if isinstance(value, bytes) else value

    def _read_attrs(self) -> None:
        attrs = self._dataset.attrs
        if "wavelengths" in attrs:
            self.wavelengths = numbers(attrs["wavelengths"], "attribute wavelengths", self.source)
        for name in ("_FillValue", "missing_value"):  # the NetCDF/HDF conventions for no-data
            if name in attrs and np.size(attrs[name]) == 1:
                self.nodata = number(np.ravel(attrs[name])[0], f"attribute {name}", self.source, finite=False)
                break
        restore_written_meta(self, attrs.get("dualsr_scene"))
        stored = self._file.get("dualsr_scene")
        if stored is not None and self.matlab:  # a MATLAB char array: UTF-16 code units
            text = small_array(stored, "dualsr_scene", self.source, limit=1 << 22).astype(np.uint16).tobytes()
            restore_written_meta(self, text.decode("utf-16-le", errors="replace"))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._dataset.dtype)

    def _read(self, window: Window | None) -> np.ndarray:
        return read_window(self._dataset, self._file_layout, window)

    def close(self) -> None:
        super().close()
        self._file.close()


class MatV73Reader(Hdf5Reader):
    """A MATLAB v7.3 file; ``layout`` is MATLAB's axis order (default ``hwc``)."""

    format = "mat-v7.3"
    matlab = True


def hdf5_attrs(dataset: Any, meta: SceneMeta, units: str) -> None:
    """The attributes of a written HDF5 cube: layout, units, provenance, the caller's, the band metadata, the
    no-data value (``_FillValue``, where the dtype holds it) and the bad bands."""
    dataset.attrs["layout"] = "chw"
    dataset.attrs["units"] = units
    dataset.attrs["dualsr_scene"] = meta.to_json()
    for key, value in meta.attrs.items():
        dataset.attrs[key] = value
    if meta.wavelengths is not None:
        dataset.attrs["wavelengths"] = np.asarray(meta.wavelengths, dtype=np.float64)
    if meta.fwhm is not None:
        dataset.attrs["fwhm"] = np.asarray(meta.fwhm, dtype=np.float64)
    if meta.nodata is not None and representable(meta.nodata, dataset.dtype):
        dataset.attrs["_FillValue"] = np.asarray(meta.nodata, dtype=dataset.dtype)
    if meta.bad_bands:
        dataset.attrs["bad_bands"] = np.asarray(meta.bad_bands, dtype=np.int32)


class Hdf5Strips(StripWriter):
    """``cube`` ``(C, H, W)``, chunked by band and 256² blocks, compressed; attributes written at the end."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, options: WriteOptions
    ) -> None:
        super().__init__(path, shape, dtype, meta, options)
        with self._removed_on_error():
            import h5py

            _c, h, w = shape
            self.file: Any = h5py.File(self._hdf5_target(), "w")
            self.row_block = min(h, chunk_rows(256, options.rows))
            self.data = self.file.create_dataset(
                "cube", shape=shape, dtype=self.dtype, chunks=(1, self.row_block, min(w, 256)), **HDF5_COMPRESSION
            )

    def write(self, first_row: int, rows: np.ndarray) -> None:
        write_region(self.data, (slice(None), slice(first_row, first_row + rows.shape[1]), slice(None)), rows)

    def _finish(self) -> None:
        hdf5_attrs(self.data, self.meta, self.options.units)
        self._close()
        self._publish(self._hdf5_written(), self.path)


def _sniff_hdf5(probe: Probe) -> bool:
    """Any HDF5 file the sensor products before it in the table did not claim; a ``.nc``/``.he5`` none claimed is
    refused here, with what was looked for."""
    if not probe.is_hdf5:
        return False
    if probe.suffix in (".he5", ".nc") and probe.hdf5 is None:
        kind = "HDF-EOS5" if probe.suffix == ".he5" else "NetCDF4"
        raise DataError(f"{probe.path}: cannot open it as {kind}/HDF5; is the file complete?")
    if probe.suffix == ".nc":
        raise DataError(
            f"{probe.path}: a NetCDF file without a known cube variable (EMIT: root reflectance or radiance beside a "
            "sensor_band_parameters group; AVIRIS-3: group reflectance with reflectance and wavelength)"
        )
    return True


HDF5 = Format(
    "hdf5",
    "HDF5 (a 3-D dataset; key= and layout= choose it)",
    sniff=_sniff_hdf5,
    reader=Hdf5Reader,
    scene_suffixes=(".h5", ".hdf5"),
    keyed=True,
    output=".h5",
    option="h5",
    writes=(".h5", ".hdf5"),
    strips=Hdf5Strips,
)
