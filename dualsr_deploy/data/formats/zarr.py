"""Zarr stores (``<name>.zarr``, a folder) that xarray and rioxarray read back with their coordinates, CRS, units
and scale.

One variable ``cube`` ``(band, y, x)`` in the written units and dtype, chunked (every band, 256 × 256 pixels),
``_FillValue`` the scene's no-data value; coordinates: ``wavelength`` and ``fwhm`` on ``band`` when known, ``y`` and
``x`` at the pixel centres of the (scaled) georeferencing when the grid is not rotated, and the CF grid mapping
``spatial_ref`` (``crs_wkt``, ``spatial_ref``, ``GeoTransform``: what rioxarray and GDAL read, the GeoZarr CF
convention) named by the cube's ``grid_mapping``. In the source's units, the CF ``scale_factor``/``add_offset`` a
reader applies to get physical values (EnMAP's 0.0001, a declared reflectance scale), or per-band ``band_gain`` and
``band_offset`` coordinates where the bands differ. ``dualsr_units`` says which units were written (``source`` or
``normalised``); ``bad_bands`` and the package's provenance (``dualsr_scene``) are attributes.

Zarr format 3 where the installed zarr writes it (zarr-python ≥ 3), else 2; ``zarr_format=2`` on request (for
readers with zarr-python 2). Metadata is consolidated. Written into a temporary folder beside the target and
renamed, so a store is either whole or absent. Whole scenes and streamed ones alike: the store made over a lazy cube,
then the cube written by regions of rows.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dualsr_deploy.data.formats.row import Format, WriteOptions
from dualsr_deploy.data.formats.strips import StripWriter
from dualsr_deploy.data.scene import SceneMeta
from dualsr_deploy.data.validity import representable
from dualsr_deploy.errors import DataError
from dualsr_deploy.optional import require

CHUNK = 256


def _scale_attrs(meta: SceneMeta, factor: float | None, coords: dict[str, Any], bands: int) -> dict[str, Any]:
    """How a reader gets physical values from stored ones: CF ``scale_factor``/``add_offset`` when every band has the
    same (xarray applies them on open), else per-band ``band_gain``/``band_offset`` coordinates."""
    gains = meta.band_gains or ((1.0 / factor,) * bands if factor else None)
    offsets = meta.band_offsets
    if gains is None and offsets is None:
        return {}
    gains = gains or (1.0,) * bands
    offsets = offsets or (0.0,) * bands
    if len(set(gains)) == 1 and len(set(offsets)) == 1:
        scale = {"scale_factor": float(gains[0])}
        return scale | ({"add_offset": float(offsets[0])} if offsets[0] else {})
    coords["band_gain"] = ("band", np.asarray(gains, dtype=np.float64))
    coords["band_offset"] = ("band", np.asarray(offsets, dtype=np.float64))
    return {"comment": "physical value = band_gain * stored value + band_offset"}


def zarr_format_default() -> int:
    """3 where the installed zarr-python writes Zarr format 3, else 2."""
    import zarr

    return 3 if int(str(zarr.__version__).split(".")[0]) >= 3 else 2


def _cube(
    data: Any, meta_json: str, meta: SceneMeta, units: str, factor: float | None = None
) -> tuple[Any, dict[str, Any]]:
    """The ``cube`` DataArray over ``data`` (an array or a lazy Dask one) with its coordinates and attributes, and
    its Zarr encoding."""
    xr: Any = require("xarray", feature="Zarr output", extra="xarray")
    require("zarr", feature="Zarr output", extra="xarray")
    c, h, w = data.shape
    coords: dict[str, Any] = {"band": np.arange(1, c + 1)}
    if meta.wavelengths is not None:
        coords["wavelength"] = ("band", np.asarray(meta.wavelengths, dtype=np.float64))
    if meta.fwhm is not None:
        coords["fwhm"] = ("band", np.asarray(meta.fwhm, dtype=np.float64))
    attrs: dict[str, Any] = {"dualsr_units": units, "dualsr_scene": meta_json, "bad_bands": list(meta.bad_bands)}
    if units == "source":
        attrs |= _scale_attrs(meta, factor, coords, c)
    georef = meta.georef
    if georef is not None:
        a, b, x0, d, e, y0 = georef.transform
        transform = " ".join(repr(v) for v in (x0, a, b, y0, d, e))
        mapping: dict[str, Any] = {"GeoTransform": transform}
        if georef.crs:
            mapping |= {"crs_wkt": georef.crs, "spatial_ref": georef.crs}
        coords["spatial_ref"] = ((), np.int64(0), mapping)  # CF grid mapping: rioxarray's rio.crs reads it
        attrs["grid_mapping"] = "spatial_ref"
        attrs["GeoTransform"] = transform
        if b == 0 and d == 0:
            coords["y"] = y0 + (np.arange(h) + 0.5) * e
            coords["x"] = x0 + (np.arange(w) + 0.5) * a
    cube = xr.DataArray(data, dims=("band", "y", "x"), coords=coords, attrs=attrs, name="cube")
    encoding: dict[str, Any] = {"chunks": (c, min(h, CHUNK), min(w, CHUNK))}
    if meta.nodata is not None and representable(meta.nodata, np.dtype(data.dtype)):
        encoding["_FillValue"] = np.asarray(meta.nodata, dtype=data.dtype).item()
    return cube, encoding


def open_zarr_cube(
    store: Path,
    shape: tuple[int, int, int],
    dtype: np.dtype,
    meta_json: str,
    meta: SceneMeta,
    units: str,
    factor: float | None = None,
    zarr_format: int | None = None,
) -> Any:
    """The store ``store`` with its metadata and coordinates, the cube's chunks not written yet; returns the ``cube``
    Zarr array, to be written by region."""
    import dask.array
    import zarr

    lazy = dask.array.zeros(shape, dtype=dtype, chunks=(shape[0], min(shape[1], CHUNK), min(shape[2], CHUNK)))
    cube, encoding = _cube(lazy, meta_json, meta, units, factor)
    version = _version(zarr_format)
    cube.to_dataset().to_zarr(
        store, mode="w", consolidated=True, zarr_format=version, encoding={"cube": encoding}, compute=False
    )
    return zarr.open_group(str(store), mode="r+", zarr_format=version)["cube"]


def _version(zarr_format: int | None) -> Literal[2, 3]:
    version = zarr_format_default() if zarr_format is None else zarr_format
    if version not in (2, 3):
        raise DataError(f"Zarr format {version}: write 2 or 3")
    if version == 3 and zarr_format_default() < 3:
        raise DataError("Zarr format 3 needs zarr-python ≥ 3; upgrade it, or write format 2")
    return 2 if version == 2 else 3


class ZarrStrips(StripWriter):
    """Zarr: the store (metadata, coordinates) made over a lazy cube, then the cube's rows written by region
    (``zarr_format``: 2 or 3; None: :func:`zarr_format_default`; ``factor``: the scale factor the source declared,
    written as the CF ``scale_factor`` of source units)."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, options: WriteOptions
    ) -> None:
        super().__init__(path, shape, dtype, meta, options)
        with self._removed_on_error():
            store = self.staging / path.name
            self.cube = open_zarr_cube(
                store, shape, self.dtype, meta.to_json(), meta, options.units, options.factor, options.zarr_format
            )

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


def store_files(output: Path) -> list[Path]:
    """A store is a folder: every file in it."""
    return sorted(p for p in output.rglob("*") if p.is_file()) if output.is_dir() else [output]


ZARR = Format(
    "zarr",
    "Zarr store (xarray/rioxarray: coordinates, CRS, CF scale)",
    option="zarr",
    writes=(".zarr",),
    strips=ZarrStrips,
    content=store_files,
    folder=True,
)

__all__ = ["ZARR", "ZarrStrips", "open_zarr_cube", "zarr_format_default"]
