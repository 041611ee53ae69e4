"""Writing a cube too large to hold whole, row strip by row strip, in the format the whole-scene writer would use.

:func:`open_strips` takes the same suffixes as :func:`~dualsr_deploy.data.writers.write_scene` and writes the same
file: HDF5 (``.h5``), ``.npy``, MATLAB v7.3 (``.mat``: HDF5 inside, so written by hyperslabs; v5 cannot be), ENVI
(``.hdr``: the data file in the source's interleave and byte order, each strip written at its offsets), TIFF,
GeoTIFF and COG (``.tif``, ``.cog.tif``: GDAL windows, georeferenced or not; a COG is copied from the written
GeoTIFF by GDAL's COG driver), EMIT and AVIRIS-3 NetCDF (``.nc``:
the product's structure first, then the cube by hyperslabs) and Zarr (``.zarr``: region writes). Metadata, tags and
headers are those of the whole-scene writers, made by the same functions.

Nothing holds more than a strip: data goes to disk as it comes (``os.pwrite``, never a memory map, whose written
pages would count against the process), and GDAL's block cache is held to :data:`GDAL_CACHE_MB` while writing.
Every file is written under a temporary name and renamed only by :meth:`StripWriter.commit`, so a run that stops
half-way leaves no partial file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from dualsr_deploy.atomic import TEMP_SUFFIX, default_mode, temp_prefix
from dualsr_deploy.data.hdf5_layout import HDF5_COMPRESSION, MATLAB_CLASS, mat_header, matlab_provenance
from dualsr_deploy.data.rawfile import RawFile
from dualsr_deploy.data.scene import SceneMeta
from dualsr_deploy.data.writers import COG_SUFFIX, WRITE_SUFFIXES
from dualsr_deploy.errors import DataError

GDAL_CACHE_MB = 64  # GDAL's block cache while a GeoTIFF is written by windows (its default is 5 % of the RAM)
TIFF_ROWS_PER_STRIP = 16  # a streamed GeoTIFF's strips


class StripWriter:
    """``(C, H, W)`` written strip by strip: ``write(first_row, rows)`` with ``rows (C, n, W)`` in the file's dtype,
    then ``commit()``; ``abort()`` (or leaving a ``with`` block without committing) removes everything written."""

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta) -> None:
        self.path, self.shape, self.dtype, self.meta = path, shape, np.dtype(dtype), meta
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(
            tempfile.mkdtemp(dir=self.path.parent, prefix=temp_prefix(self.path.name), suffix=TEMP_SUFFIX)
        )
        self.committed = False

    @contextlib.contextmanager
    def _removed_on_error(self) -> Iterator[None]:
        """Around a writer's setup: if it fails, what it made so far (the staging folder, open files) is removed."""
        try:
            yield
        except BaseException:
            self.abort()
            raise

    def write(self, first_row: int, rows: np.ndarray) -> None:
        raise NotImplementedError

    def add_attrs(self, attrs: Mapping[str, str]) -> None:
        """Attributes known only once every row is written (a streamed scene's consistency figures), before
        :meth:`commit`: in the provenance (``dualsr_scene``) as any attribute given at the start is."""
        self.meta = self.meta.replace(attrs={**self.meta.attrs, **attrs})
        self._provenance_changed()

    def _provenance_changed(self) -> None:
        """Writers that wrote their provenance when they opened write it again (the others write it at the end)."""

    def _finish(self) -> None:
        """Close the file(s) in :attr:`staging` and move them to their final names."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release open handles (after a failure too): a data file written at offsets (``raw``) or an HDF5 file
        (``file``), whichever the writer made; neither when its setup failed before making it."""
        raw = getattr(self, "raw", None)
        if raw is not None:
            raw.discard()
        file: Any = getattr(self, "file", None)
        if file is not None:
            file.close()
            self.file = None

    def commit(self) -> Path:
        self._finish()
        self.committed = True
        shutil.rmtree(self.staging, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        try:
            self._close()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def _publish(self, written: Path, target: Path) -> None:
        os.chmod(written, default_mode())
        os.replace(written, target)

    def __enter__(self) -> StripWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if not self.committed:
            self.abort()


class _Hdf5Strips(StripWriter):
    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, units: str) -> None:
        super().__init__(path, shape, dtype, meta)
        with self._removed_on_error():
            import h5py

            _c, h, w = shape
            self.units = units
            self.file: Any = h5py.File(self.staging / path.name, "w")
            self.data = self.file.create_dataset(
                "cube", shape=shape, dtype=self.dtype, chunks=(1, min(h, 256), min(w, 256)), **HDF5_COMPRESSION
            )

    def write(self, first_row: int, rows: np.ndarray) -> None:
        self.data[:, first_row : first_row + rows.shape[1]] = rows

    def _finish(self) -> None:
        from dualsr_deploy.data.writers import hdf5_attrs

        hdf5_attrs(self.data, self.meta.to_json(), self.meta, self.units)
        self._close()
        self._publish(self.staging / self.path.name, self.path)


class _NpyStrips(StripWriter):
    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta) -> None:
        super().__init__(path, shape, dtype, meta)
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
        from dualsr_deploy.atomic import atomic_output
        from dualsr_deploy.data.readers.numpy_files import sidecar

        self.raw.close()
        with atomic_output(sidecar(self.path)) as meta_tmp:
            meta_tmp.write_text(self.meta.to_json())
        self._publish(self.staging / self.path.name, self.path)


class _MatStrips(StripWriter):
    """MATLAB v7.3: the cube stored ``(C, W, H)`` in HDF5 (MATLAB's reversed axes of ``H × W × C``), so a strip of
    rows is a hyperslab on the last axis."""

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta) -> None:
        super().__init__(path, shape, dtype, meta)
        with self._removed_on_error():
            import h5py

            matlab_class = MATLAB_CLASS.get(str(self.dtype))
            if matlab_class is None:
                raise DataError(f"{path}: cannot write {self.dtype} to MATLAB v7.3")
            c, h, w = shape
            self.file: Any = h5py.File(self.staging / path.name, "w", userblock_size=512)
            self.cube = self.file.create_dataset(
                "cube", shape=(c, w, h), dtype=self.dtype, chunks=(1, min(w, 256), min(h, 256)), **HDF5_COMPRESSION
            )
            self.cube.attrs["MATLAB_class"] = np.bytes_(matlab_class)

    def write(self, first_row: int, rows: np.ndarray) -> None:
        self.cube[:, :, first_row : first_row + rows.shape[1]] = np.transpose(rows, (0, 2, 1))

    def _finish(self) -> None:
        matlab_provenance(self.file, self.meta.to_json())
        self._close()
        written = self.staging / self.path.name
        with written.open("r+b") as handle:
            handle.write(mat_header())
        self._publish(written, self.path)


class _EnviStrips(StripWriter):
    """ENVI: the data file in the header's interleave (BSQ: a band's rows; BIL: whole lines; BIP: whole lines, bands
    innermost) and byte order, each strip written at its offsets."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        meta: SceneMeta,
        units: str,
        factor: float | None,
    ) -> None:
        super().__init__(path, shape, dtype, meta)
        with self._removed_on_error():
            from dualsr_deploy.data.envi_writer import envi_layout

            self.layout = envi_layout(path, shape, self.dtype, meta, units, factor)
            self.stored = self.layout.stored(self.dtype)
            c, h, w = shape
            self.raw = RawFile(self.staging / self.layout.data_name, c * h * w * self.dtype.itemsize)

    def write(self, first_row: int, rows: np.ndarray) -> None:
        c, h, w = self.shape
        size = self.dtype.itemsize
        values = rows.astype(self.stored, copy=False)
        if self.layout.interleave == "bsq":
            for band in range(c):
                self.raw.put((band * h + first_row) * w * size, values[band])
        elif self.layout.interleave == "bil":
            self.raw.put(first_row * c * w * size, np.transpose(values, (1, 0, 2)))
        else:
            self.raw.put(first_row * w * c * size, np.transpose(values, (1, 2, 0)))

    def _finish(self) -> None:
        from dualsr_deploy.data.envi_writer import publish_envi

        self.raw.close()
        publish_envi(self.path, self.staging, self.layout, self.meta.to_json())


class _GeoTiffStrips(StripWriter):
    """GeoTIFF by GDAL windows (stripped, :data:`TIFF_ROWS_PER_STRIP` rows, so that a window of rows completes its
    blocks); a ``.cog.tif`` is then copied by GDAL's COG driver."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        meta: SceneMeta,
        units: str,
        factor: float | None,
    ) -> None:
        super().__init__(path, shape, dtype, meta)
        with self._removed_on_error():
            from dualsr_deploy.data.geotiff_writer import open_geotiff
            from dualsr_deploy.data.readers.tiff import import_rasterio

            self.rasterio = import_rasterio()
            self.cog = path.name.lower().endswith(COG_SUFFIX)
            self.env = self.rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
            self.env.__enter__()
            self.plain = self.staging / ("plain.tif" if self.cog else path.name)
            self.dataset: Any = open_geotiff(
                self.rasterio,
                self.plain,
                shape,
                self.dtype,
                meta.to_json(),
                meta,
                units,
                factor,
                tiled=False,
                rows_per_strip=TIFF_ROWS_PER_STRIP,
            )

    def write(self, first_row: int, rows: np.ndarray) -> None:
        from rasterio.windows import Window

        _c, _h, w = self.shape
        self.dataset.write(rows, window=Window(0, first_row, w, rows.shape[1]))

    def _provenance_changed(self) -> None:
        self.dataset.update_tags(DUALSR_SCENE=self.meta.to_json())

    def _finish(self) -> None:
        from dualsr_deploy.data.geotiff_writer import to_cog

        self._close_dataset()
        try:
            if self.cog:
                to_cog(self.plain, self.path, self.dtype)
            else:
                self._publish(self.plain, self.path)
        finally:
            self._leave()

    def _close_dataset(self) -> None:
        if getattr(self, "dataset", None) is not None:
            self.dataset.close()
            self.dataset = None

    def _leave(self) -> None:
        if getattr(self, "env", None) is not None:
            self.env.__exit__(None, None, None)
            self.env = None

    def _close(self) -> None:
        try:
            self._close_dataset()
        finally:
            self._leave()


class _NetcdfStrips(StripWriter):
    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta) -> None:
        super().__init__(path, shape, dtype, meta)
        with self._removed_on_error():
            from dualsr_deploy.data.netcdf_writers import NetcdfStrips

            self.strips: Any = NetcdfStrips(self.staging / path.name, meta, shape, self.dtype, meta.to_json())

    def write(self, first_row: int, rows: np.ndarray) -> None:
        self.strips.write(first_row, rows)

    def _provenance_changed(self) -> None:
        self.strips.out.attrs["dualsr_scene"] = self.meta.to_json()

    def _finish(self) -> None:
        self._close()
        self._publish(self.staging / self.path.name, self.path)

    def _close(self) -> None:
        if getattr(self, "strips", None) is not None:
            self.strips.close()
            self.strips = None


class _ZarrStrips(StripWriter):
    """Zarr: the store (metadata, coordinates) made by the whole-scene writer over a lazy cube, then the cube's rows
    written by region."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        meta: SceneMeta,
        units: str,
        factor: float | None,
        zarr_format: int | None,
    ) -> None:
        super().__init__(path, shape, dtype, meta)
        with self._removed_on_error():
            from dualsr_deploy.data.zarr_writer import open_zarr_cube

            store = self.staging / path.name
            self.cube = open_zarr_cube(store, shape, self.dtype, meta.to_json(), meta, units, factor, zarr_format)

    def write(self, first_row: int, rows: np.ndarray) -> None:
        self.cube[:, first_row : first_row + rows.shape[1]] = rows

    def _provenance_changed(self) -> None:
        import zarr

        self.cube.attrs["dualsr_scene"] = self.meta.to_json()
        zarr.consolidate_metadata(str(self.staging / self.path.name))  # what xr.open_zarr reads first

    def _finish(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.staging / self.path.name, self.path)


def open_strips(
    path: str | os.PathLike[str],
    shape: tuple[int, int, int],
    meta: SceneMeta,
    attrs: Mapping[str, str],
    *,
    dtype: str | np.dtype = "float32",
    units: str = "normalised",
    factor: float | None = None,
    zarr_format: int | None = None,
) -> StripWriter:
    """A :class:`StripWriter` for ``path`` (its suffix chooses the format, as for ``write_scene``); ``dtype``: float32
    (normalised units) or the source's (``units="source"``); ``factor``: the scale factor a file in the source's
    units declares, as :func:`~dualsr_deploy.data.writers.declared_factor` gives it; ``zarr_format``: as for
    ``write_scene``."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise DataError(f"{target}: cannot write {suffix or 'files without a suffix'}; use one of {WRITE_SUFFIXES}")
    meta = meta.replace(attrs={**meta.attrs, **attrs, "dualsr_units": units})
    kind = np.dtype(dtype).newbyteorder("=")  # native: each format stores its own byte order (ENVI: the source's)
    if suffix in (".h5", ".hdf5"):
        return _Hdf5Strips(target, shape, kind, meta, units)
    if suffix == ".npy":
        return _NpyStrips(target, shape, kind, meta)
    if suffix == ".mat":
        return _MatStrips(target, shape, kind, meta)
    if suffix == ".hdr":
        return _EnviStrips(target, shape, kind, meta, units, factor)
    if suffix in (".tif", ".tiff"):
        return _GeoTiffStrips(target, shape, kind, meta, units, factor)
    if suffix == ".nc":
        return _NetcdfStrips(target, shape, kind, meta)
    return _ZarrStrips(target, shape, kind, meta, units, factor, zarr_format)


__all__ = ["GDAL_CACHE_MB", "StripWriter", "open_strips"]
