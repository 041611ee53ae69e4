"""Zarr stores (``<name>.zarr``, a folder) that ``xr.open_zarr`` reads back with their coordinates.

One variable ``cube`` ``(band, y, x)`` in the written units and dtype, chunked (every band, 256 × 256 pixels),
``_FillValue`` the scene's no-data value; coordinates: ``wavelength`` and ``fwhm`` on ``band`` when known, ``y`` and
``x`` at the pixel centres of the (scaled) georeferencing when the grid is not rotated; attributes: ``crs_wkt``,
``GeoTransform`` (GDAL's order), ``bad_bands``, ``units`` and the package's provenance (``dualsr_scene``).
Zarr format 2 with consolidated metadata, which every Zarr reader opens. Written into a temporary folder beside
the target and renamed, so a store is either whole or absent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.atomic import TEMP_SUFFIX, temp_prefix
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.data.validity import representable
from dualsr_deploy.optional import require

CHUNK = 256


def _cube(data: Any, meta_json: str, meta: SceneMeta, units: str) -> tuple[Any, dict[str, Any]]:
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
    attrs: dict[str, Any] = {"units": units, "dualsr_scene": meta_json, "bad_bands": list(meta.bad_bands)}
    georef = meta.georef
    if georef is not None:
        a, b, x0, d, e, y0 = georef.transform
        attrs["GeoTransform"] = " ".join(repr(v) for v in (x0, a, b, y0, d, e))
        if georef.crs:
            attrs["crs_wkt"] = georef.crs
        if b == 0 and d == 0:
            coords["y"] = y0 + (np.arange(h) + 0.5) * e
            coords["x"] = x0 + (np.arange(w) + 0.5) * a
    cube = xr.DataArray(data, dims=("band", "y", "x"), coords=coords, attrs=attrs, name="cube")
    encoding: dict[str, Any] = {"chunks": (c, min(h, CHUNK), min(w, CHUNK))}
    if meta.nodata is not None and representable(meta.nodata, np.dtype(data.dtype)):
        encoding["_FillValue"] = np.asarray(meta.nodata, dtype=data.dtype).item()
    return cube, encoding


def write_zarr(target: Path, data: np.ndarray, meta_json: str, scene: Scene, units: str) -> None:
    """``data (C, H, W)`` as the Zarr store ``target``."""
    cube, encoding = _cube(data, meta_json, scene.meta, units)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=temp_prefix(target.name), suffix=TEMP_SUFFIX))
    try:
        store = staging / target.name
        cube.to_dataset().to_zarr(store, mode="w", consolidated=True, zarr_format=2, encoding={"cube": encoding})
        if target.exists():
            shutil.rmtree(target)
        os.replace(store, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def open_zarr_cube(
    store: Path, shape: tuple[int, int, int], dtype: np.dtype, meta_json: str, meta: SceneMeta, units: str
) -> Any:
    """The store ``store`` made as :func:`write_zarr` makes it, but with the cube's chunks not written yet; returns
    the ``cube`` Zarr array, to be written by region."""
    import dask.array
    import zarr

    lazy = dask.array.zeros(shape, dtype=dtype, chunks=(shape[0], min(shape[1], CHUNK), min(shape[2], CHUNK)))
    cube, encoding = _cube(lazy, meta_json, meta, units)
    cube.to_dataset().to_zarr(
        store, mode="w", consolidated=True, zarr_format=2, encoding={"cube": encoding}, compute=False
    )
    return zarr.open_group(str(store), mode="r+")["cube"]


__all__ = ["open_zarr_cube", "write_zarr"]
