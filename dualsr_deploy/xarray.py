"""DualSR on ``xarray`` objects, where notebooks already hold their scenes (``pip install 'dualsr-deploy[xarray]'``).

    import dualsr_deploy.xarray                     # registers the accessor
    sr = super_resolve(ds, "reflectance", scale=2)  # a Dataset and a variable, or a DataArray
    sr = da.dualsr.super_resolve(scale=2)           # the same, as an accessor

The object needs one band dimension (``band``, ``bands``, ``wavelength``, ``wavelengths`` or ``band_dim=``) and two
spatial ones (``y``/``x``, ``downtrack``/``crosstrack``, ``lines``/``samples``, ``rows``/``columns`` or
``spatial_dims=``), in any order. The result is the same kind of object with the spatial sizes × s: regular 1-D
spatial coordinates at the finer grid's pixel centres, 2-D coordinates on the grid (EMIT's ``lat``/``lon``)
resampled linearly at pixel centres (as the NetCDF writer does), band coordinates and attributes kept, values in
the input's units and dtype. No-data is treated as ``dualsr infer`` treats it: NaN, the variable's ``_FillValue``
(attribute or encoding), ``nodata``/``missing_value`` attributes and ``nodata=`` are invalid; bands without a
valid value are bad (nearest-neighbour upsampled); invalid output pixels are NaN for float outputs (xarray's
convention; the input's encoding is kept, so ``to_netcdf`` writes its ``_FillValue``) and the no-data value for
integer ones. With rioxarray, the CRS is kept and the transform follows the new coordinates.

**Dask.** A Dask-backed input gives a lazy result. The call itself makes the scene-wide passes first (statistics:
normalisation factor, bad bands, clip floors, over row strips; for the fine stages, the SAM weight), then every
chunk of the result is computed with a halo of LR pixels around it (``⌈√2·reach⌉ +
1``, as a streamed scene is read, so its no-data fill and receptive field match the whole scene's) and cut back.
The fine stages need one SAM weight for the whole scene: a map-reduce sums the spectral angles of every chunk's
core (computed during the call), then the result's map computes the back-projection with that weight, both on
whatever scheduler is active (a ``dask.distributed`` cluster included: each worker process loads the models
once and runs torch on as many threads as the worker has). The band dimension must be one chunk; it is rechunked
with a warning otherwise.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from dualsr_deploy.data.validity import MIN_SEGMENT
from dualsr_deploy.errors import InputError
from dualsr_deploy.optional import require
from dualsr_deploy.xarray_compute import ArrayReader, Request, in_memory, what_ran
from dualsr_deploy.xarray_compute import lazy as lazy_result

BAND_DIMS = ("band", "bands", "wavelength", "wavelengths")
SPATIAL_DIMS = (("y", "x"), ("downtrack", "crosstrack"), ("lines", "samples"), ("rows", "columns"))
FILL_ATTRS = ("_FillValue", "nodata", "missing_value")


def _xr() -> Any:
    return require("xarray", feature="the xarray entry point", extra="xarray")


def _dims(da: Any, band_dim: str | None, spatial_dims: Sequence[str] | None) -> tuple[str, str, str]:
    dims = [str(d) for d in da.dims]
    if da.ndim != 3:
        raise InputError(f"super_resolve needs a 3-D DataArray (bands and two spatial dimensions); this has {dims}")
    band = band_dim or next((d for d in BAND_DIMS if d in dims), None)
    if band is None or band not in dims:
        raise InputError(
            f"no band dimension among {dims}: name it {', '.join(BAND_DIMS)}, or pass band_dim=; the others are "
            "the spatial dimensions"
        )
    if spatial_dims is not None:
        rows, cols = (str(d) for d in spatial_dims)
    else:
        pair = next((p for p in SPATIAL_DIMS if p[0] in dims and p[1] in dims), None)
        rows, cols = pair if pair is not None else tuple(d for d in dims if d != band)
    if {band, rows, cols} != set(dims):
        raise InputError(f"band {band!r} and spatial dimensions ({rows!r}, {cols!r}) do not cover {dims}")
    return band, rows, cols


def _check_coordinate(da: Any, dim: str) -> None:
    if dim not in da.coords or da[dim].ndim != 1 or da.sizes[dim] < 2:
        return
    values = np.asarray(da[dim].values)
    if values.dtype.kind not in "fiuM":
        return
    steps = np.diff(values.astype(np.float64))
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise InputError(f"the {dim!r} coordinate is not monotonic: sort the object along {dim!r} first")


def _nodata(da: Any, nodata: float | None) -> float | None:
    if nodata is not None:
        return float(nodata)
    for source in (da.attrs, da.encoding):
        for key in FILL_ATTRS:
            if key in source and source[key] is not None:
                value = np.ravel(source[key])[0]
                if np.isfinite(value):
                    return float(value)
    return None


def _wavelengths(da: Any, band: str) -> tuple[float, ...] | None:
    """Band centres from a band coordinate, or a per-band ``wavelength`` attribute (as rioxarray reads GeoTIFF
    tags); None when neither gives one number a band."""
    for name in (band, "wavelength", "wavelengths"):
        kind = np.asarray(da[name].values).dtype.kind if name in da.coords else ""
        # a band coordinate of band numbers (1, 2, …) is no wavelength; a floating one, or a named one, is
        if kind and da[name].dims == (band,) and (kind == "f" or (name != band and kind in "iu")):
            return tuple(float(v) for v in np.asarray(da[name].values))
    for name in ("wavelength", "wavelengths"):
        values = da.attrs.get(name)
        if values is not None and np.size(values) == da.sizes[band]:
            try:
                return tuple(float(v) for v in np.ravel(values))
            except (TypeError, ValueError):
                return None
    return None


def super_resolve(
    obj: Any,
    variable: Hashable | None = None,
    *,
    scale: int = 4,
    stage: str = "auto",
    weights: str = "auto",
    backend: str = "auto",
    precision: str = "auto",
    device: str | None = None,
    tile: int | None = None,
    clip: bool = True,
    nodata: float | None = None,
    band_dim: str | None = None,
    spatial_dims: Sequence[str] | None = None,
) -> Any:
    """``obj`` (an ``xr.DataArray``, or an ``xr.Dataset`` and the name of its ``variable``) super-resolved ×``scale``;
    returns the same kind of object (a Dataset comes back with that variable replaced and the others that lie on
    the spatial grid resampled). See the module docstring for dimensions, coordinates, no-data and Dask."""
    xr = _xr()
    if isinstance(obj, xr.Dataset):
        if variable is None:
            cubes = [name for name, v in obj.data_vars.items() if v.ndim == 3]
            if len(cubes) != 1:
                raise InputError(f"name the variable to super-resolve (3-D variables: {cubes})")
            variable = cubes[0]
        result = super_resolve(
            obj[variable], scale=scale, stage=stage, weights=weights, backend=backend, precision=precision,
            device=device, tile=tile, clip=clip, nodata=nodata, band_dim=band_dim, spatial_dims=spatial_dims,
        )  # fmt: skip
        band, rows, cols = _dims(obj[variable], band_dim, spatial_dims)
        others = {
            name: _resample_field(v, rows, cols, scale)
            for name, v in obj.data_vars.items()
            if name != variable and (rows in v.dims or cols in v.dims)
        }
        kept = obj.drop_vars(
            [variable, *others, *[c for c in obj.coords if rows in obj[c].dims or cols in obj[c].dims]]
        )
        return kept.assign({variable: result, **others}).assign_attrs(obj.attrs)
    if not isinstance(obj, xr.DataArray):
        raise InputError(f"super_resolve takes an xarray DataArray or Dataset, not {type(obj).__name__}")
    band, rows, cols = _dims(obj, band_dim, spatial_dims)
    if obj.sizes[band] < MIN_SEGMENT:
        raise InputError(f"{obj.sizes[band]} bands along {band!r}: CoarSR needs at least {MIN_SEGMENT}")
    for dim in (rows, cols):
        _check_coordinate(obj, dim)
    cube = obj.transpose(band, rows, cols)
    request = Request(scale, stage, str(weights), backend, precision, device, tile, clip)
    data = cube.data
    lazy = hasattr(data, "dask")
    if lazy and len(data.chunks[0]) > 1:
        warnings.warn(
            f"the band dimension {band!r} was in {len(data.chunks[0])} chunks; rechunked to one", stacklevel=2
        )
        data = data.rechunk({0: -1})
    name = str(obj.name or "scene")
    reader = ArrayReader(data, name, _nodata(obj, nodata), _wavelengths(obj, band))
    figures = None
    if lazy:
        values = lazy_result(reader, data, request)
    else:
        values, figures = in_memory(reader, request)
    ran = what_ran(reader, request)
    if figures is not None:  # as dualsr infer's records hold them; one JSON attribute, as netCDF attributes are flat
        from dualsr_deploy.infer.consistency import suspect

        ran["dualsr_consistency"] = json.dumps(figures, sort_keys=True)
        reason = suspect(figures)
        if reason:
            ran["dualsr_suspect"] = reason
    return _wrap(obj, cube, values, band, rows, cols, scale, ran, reader.nodata)


def _wrap(
    obj: Any,
    cube: Any,
    values: Any,
    band: str,
    rows: str,
    cols: str,
    scale: int,
    ran: dict[str, str],
    nodata: float | None,
) -> Any:
    xr = _xr()
    coords: dict[str, Any] = {}
    for name, coord in cube.coords.items():
        dims = coord.dims
        if rows not in dims and cols not in dims:
            coords[str(name)] = coord
        elif dims in ((rows,), (cols,)):
            coords[str(name)] = (dims, _centres(np.asarray(coord.values), scale), coord.attrs)
        elif set(dims) == {rows, cols}:
            coords[str(name)] = (dims, _resample_values(np.asarray(coord.values), scale), coord.attrs)
    attrs = dict(obj.attrs)
    attrs.update({"dualsr_scale": scale, **ran})
    masked = nodata is not None and np.dtype(values.dtype).kind == "f" and not np.isnan(nodata)
    if masked:  # no-data is NaN in the values: the fill value moves to the encoding (rioxarray's masked convention,
        for name in FILL_ATTRS:  # so rio.nodata is NaN and rio.to_raster / to_netcdf write the fill value there)
            attrs.pop(name, None)
    out = xr.DataArray(values, dims=(band, rows, cols), coords=coords, attrs=attrs, name=obj.name)
    out = out.transpose(*obj.dims)
    out.encoding = {k: v for k, v in obj.encoding.items() if k in ("_FillValue", "dtype", "scale_factor", "add_offset")}
    if masked:
        out.encoding["_FillValue"] = nodata
    if hasattr(obj, "rio"):
        try:
            crs = obj.rio.crs
        except Exception:  # rioxarray present but the object has no CRS
            crs = None
        if crs is not None:  # the transform follows the finer coordinates (the copied one is the input's)
            out = out.rio.write_crs(crs)
            out = out.rio.write_transform(out.rio.transform(recalc=True))
    return out


def _resample_field(field: Any, rows: str, cols: str, scale: int) -> Any:
    """A Dataset's other variable on the grid: 2-D floating fields linearly at pixel centres, others repeated."""
    xr = _xr()
    values = np.asarray(field.values)
    if field.dims in ((rows, cols), (cols, rows)) and values.dtype.kind == "f":
        resampled = _resample_values(values, scale)
    else:
        resampled = values
        for axis, dim in enumerate(field.dims):
            if dim in (rows, cols):
                resampled = np.repeat(resampled, scale, axis=axis)
    return xr.DataArray(resampled, dims=field.dims, attrs=field.attrs, name=field.name)


def _centres(values: np.ndarray, scale: int) -> np.ndarray:
    from dualsr_deploy.data.formats.netcdf.write import pixel_centres as centres

    if values.dtype.kind not in "fiu":
        return np.repeat(values, scale)
    return centres(values.astype(np.float64), scale).astype(values.dtype if values.dtype.kind == "f" else np.float64)


def _resample_values(values: np.ndarray, scale: int) -> np.ndarray:
    from dualsr_deploy.data.formats.netcdf.write import linear_resample

    return linear_resample(values.astype(np.float64), scale).astype(
        values.dtype if values.dtype.kind == "f" else np.float64
    )


def _register() -> None:
    xr = _xr()

    @xr.register_dataarray_accessor("dualsr")
    class DualSRAccessor:
        """``da.dualsr.super_resolve(scale=2, …)``: :func:`super_resolve` of this DataArray."""

        def __init__(self, obj: Any) -> None:
            self._obj = obj

        def super_resolve(self, **kwargs: Any) -> Any:
            return super_resolve(self._obj, **kwargs)


with contextlib.suppress(Exception):  # xarray missing: super_resolve still says which extra to install
    _register()

__all__ = ["ArrayReader", "super_resolve"]
