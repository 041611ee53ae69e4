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
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.data.readers.base import SceneReader
from dualsr_deploy.data.scene import Scene, Window
from dualsr_deploy.data.validity import MIN_SEGMENT, Masking, nearest_up
from dualsr_deploy.errors import InputError
from dualsr_deploy.infer.fine import clip_range, floor_tensor
from dualsr_deploy.infer.masked import output_scene, plan_segments
from dualsr_deploy.infer.masked import super_resolve as masked_super_resolve
from dualsr_deploy.infer.options import BackendSpec, InferOptions
from dualsr_deploy.infer.streaming import fill_margin
from dualsr_deploy.infer.upscaler import Upscaler
from dualsr_deploy.metrics import sam_map
from dualsr_deploy.ops.imresize import imresize
from dualsr_deploy.optional import require

BAND_DIMS = ("band", "bands", "wavelength", "wavelengths")
SPATIAL_DIMS = (("y", "x"), ("downtrack", "crosstrack"), ("lines", "samples"), ("rows", "columns"))
FILL_ATTRS = ("_FillValue", "nodata", "missing_value")


def _xr() -> Any:
    return require("xarray", feature="the xarray entry point", extra="xarray")


@dataclass(frozen=True)
class _Request:
    """What to run, hashable: the key of the per-process model cache (a Dask worker loads its models once)."""

    scale: int
    stage: str
    weights: str
    backend: str
    precision: str
    device: str | None
    tile: int | None
    clip: bool

    def options(self) -> InferOptions:
        spec = BackendSpec.for_run(
            self.backend,
            scale=self.scale,
            stage=self.stage,
            device=self.device,
            precision=self.precision,
            weights=self.weights,
        )
        return InferOptions(scale=self.scale, stage=self.stage, backend=spec, tile=self.tile, clip=self.clip)


_UPSCALERS: dict[_Request, Upscaler] = {}


def _upscaler(request: _Request) -> Upscaler:
    """One :class:`Upscaler` per request and process: models load once per (Dask worker) process."""
    if request not in _UPSCALERS:
        _fit_threads_to_worker()
        _UPSCALERS[request] = Upscaler(request.options())
    return _UPSCALERS[request]


def _fit_threads_to_worker() -> None:
    """In a ``dask.distributed`` worker, torch's intra-op threads = the worker's threads: torch's default (every
    core) in each of several worker processes oversubscribes the machine several times over."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not in a distributed worker
        return
    torch.set_num_threads(max(1, int(worker.state.nthreads)))


class ArrayReader(SceneReader):
    """A ``(C, H, W)`` array (NumPy, or Dask: windows computed on request) as a scene, so that statistics, validity
    and normalisation are exactly those of ``dualsr infer``."""

    format = "xarray"

    def __init__(self, array: Any, name: str, nodata: float | None, wavelengths: tuple[float, ...] | None) -> None:
        super().__init__(Path(name), name)
        self._array = array
        self.nodata = nodata
        self.wavelengths = wavelengths

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self._array.shape
        return int(c), int(h), int(w)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    def _read(self, window: Window | None) -> np.ndarray:
        part = self._array if window is None else self._array[:, window.rows, window.cols]
        return np.asarray(part.compute() if hasattr(part, "compute") else part)

    def statistics(self, normalise: Normalisation, masking: Masking) -> Any:
        if self.shape[1] * self.shape[2] * self.shape[0] > 0:
            self.resolve_in_strips(normalise, masking=masking)
            if (normalise, masking) not in self._resolved:  # percentiles: one whole read
                self.load(normalise, Window(0, 0, 1, self.shape[2]), masking)
        return self._resolved[(normalise, masking)]

    def seed(self, normalise: Normalisation, masking: Masking, resolved: Any) -> None:
        self._resolved[(normalise, masking)] = resolved


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
    backend: str = "torch",
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
    request = _Request(scale, stage, str(weights), backend, precision, device, tile, clip)
    data = cube.data
    lazy = hasattr(data, "dask")
    if lazy and len(data.chunks[0]) > 1:
        warnings.warn(
            f"the band dimension {band!r} was in {len(data.chunks[0])} chunks; rechunked to one", stacklevel=2
        )
        data = data.rechunk({0: -1})
    name = str(obj.name or "scene")
    reader = ArrayReader(data, name, _nodata(obj, nodata), _wavelengths(obj, band))
    values = _lazy(reader, data, request) if lazy else _in_memory(reader, request)
    return _wrap(obj, cube, values, band, rows, cols, scale, request)


def _prepare(reader: ArrayReader, request: _Request) -> tuple[Upscaler, InferOptions, Any, Any]:
    upscaler = _upscaler(request)
    choice = upscaler.choose(reader.shape[0], reader.wavelengths)
    options, _pool, runner = upscaler.route(choice)
    return upscaler, options, runner, choice


def _in_memory(reader: ArrayReader, request: _Request) -> np.ndarray:
    upscaler, options, runner, choice = _prepare(reader, request)
    scene = reader.load(options.normalise, masking=options.masking)
    device = upscaler.route(choice)[1].backend(options.scale, _widest(scene)).device
    _coarse, result, _weight, _notes = masked_super_resolve(runner, options, scene, device)
    return _raw(scene, result.cpu().numpy(), options)


def _widest(scene: Scene) -> int:
    return max(b - a for a, b in plan_segments(scene)[0])


def _raw(scene: Scene, result: np.ndarray, options: InferOptions) -> np.ndarray:
    from dualsr_deploy.infer.context import output_meta

    values = output_scene(scene, result, options.scale, output_meta(scene.meta, options.scale)).raw()
    nodata = scene.meta.nodata
    if values.dtype.kind == "f" and nodata is not None:  # xarray's convention: no-data is NaN in memory (to_netcdf
        values[values == nodata] = np.nan  # writes the _FillValue of the encoding kept on the result)
    return values


# ---- Dask: chunks with halos, and the fine stage's scene-wide SAM weight in a map-reduce first ----


def _lazy(reader: ArrayReader, data: Any, request: _Request) -> Any:
    dask: Any = require("dask", feature="Dask-backed inputs", extra="xarray")
    dsa: Any = require("dask.array", feature="Dask-backed inputs", extra="xarray")

    upscaler, options, _runner, choice = _prepare(reader, request)
    resolved = reader.statistics(options.normalise, options.masking)
    halo = fill_margin(upscaler.reach_for(choice))
    # an axis no longer than the halo (or in one chunk already) is computed whole: no halo along it
    whole = [axis for axis in (1, 2) if data.shape[axis] <= halo or len(data.chunks[axis]) == 1]
    if whole:
        data = data.rechunk(dict.fromkeys(whole, -1))
    halos = tuple(0 if axis in whole else halo for axis in (1, 2))
    padded = dsa.overlap.overlap(data, depth={0: 0, 1: halos[0], 2: halos[1]}, boundary="none")
    # a block is its core plus a halo on each side that has a neighbour (dask may have rechunked to fit the halo)
    cores = tuple(
        tuple(size - depth * (i > 0) - depth * (i < len(sizes) - 1) for i, size in enumerate(sizes))
        for sizes, depth in zip(padded.chunks[1:], halos, strict=True)
    )
    s = request.scale
    row_chunks, col_chunks = (tuple(c * s for c in sizes) for sizes in cores)
    common = {"request": request, "resolved": resolved, "nodata": reader.nodata, "scene_name": reader.name}
    common |= {"shape": reader.shape, "cores": cores, "halos": halos, "wavelengths": reader.wavelengths}
    weight = None
    if options.stage != "coarse":
        sums = ((2,), (1,) * len(cores[0]), (1,) * len(cores[1]))
        parts = dsa.map_blocks(_block_angles, padded, dtype=np.float64, chunks=sums, **common)
        total, count = (float(v) for v in dask.compute(parts[0].sum(), parts[1].sum())[:2])
        weight = min(total / max(count, 1.0), 1.0)
    out_dtype = np.dtype(reader.dtype if options.units == "source" else np.float32)
    return dsa.map_blocks(
        _block_result, padded, dtype=out_dtype, chunks=(data.chunks[0], row_chunks, col_chunks), weight=weight,
        **common,
    )  # fmt: skip


@dataclass
class _Route:
    """The block functions' view of a run: its options (with the weights ``auto`` chose), pool and runner."""

    options: InferOptions
    pool: Any
    runner: Any

    @classmethod
    def of(cls, common: dict[str, Any]) -> _Route:
        upscaler = _upscaler(common["request"])
        choice = upscaler.choose(common["shape"][0], common["wavelengths"])
        return cls(*upscaler.route(choice))


def _block_scene(block: np.ndarray, block_info: Any, common: dict[str, Any], route: _Route) -> tuple[Scene, Window]:
    """The block (with its halo) as a scene read with the whole scene's statistics, and where its core lies."""
    _, i, j = block_info[0]["chunk-location"]
    (row_halo, col_halo), cores = common["halos"], common["cores"]
    core = Window(row_halo if i > 0 else 0, col_halo if j > 0 else 0, cores[0][i], cores[1][j])
    reader = ArrayReader(block, common["scene_name"], common["nodata"], common["wavelengths"])
    reader.seed(route.options.normalise, route.options.masking, common["resolved"])
    return reader.load(route.options.normalise, masking=route.options.masking), core


def _coarse_pair(scene: Scene, route: _Route) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
    """The block's clipped coarse ×s result (all bands) and, for ``dual``, its clipped ×s/2 one, as
    :func:`~dualsr_deploy.infer.masked.super_resolve` computes them."""
    options = route.options
    device = route.pool.backend(options.scale, _widest(scene)).device
    coarse, _result, _w, _notes = masked_super_resolve(route.runner, replace(options, stage="coarse"), scene, device)
    low = None
    if options.stage == "dual":
        half = replace(options, stage="coarse", scale=options.scale // 2)
        low, _r, _w2, _n = masked_super_resolve(route.runner, half, scene, device)
    return coarse, low, device


def _network(scene: Scene) -> list[int]:
    return [i for a, b in plan_segments(scene)[0] for i in range(a, b)]


def _guide(scene: Scene, low: torch.Tensor | None, device: Any) -> torch.Tensor:
    """The fine stage's guide for the network bands: the ×s/2 result (dual) or the filled LR input (backproject)."""
    if low is not None:
        return low[_network(scene)]
    from dualsr_deploy.data.validity import fill_invalid

    valid = scene.valid if scene.valid is not None else np.ones(scene.cube.shape[1:], dtype=bool)
    return torch.from_numpy(fill_invalid(scene.cube, valid)).to(device)[_network(scene)]


def _block_angles(block: np.ndarray, block_info: Any = None, **common: Any) -> np.ndarray:
    """``[[[Σ angle]], [[count]]]`` over the valid pixels of the block's core, at the guide's resolution."""
    route = _Route.of(common)
    scene, core = _block_scene(block, block_info, common, route)
    coarse, low, device = _coarse_pair(scene, route)
    guide = _guide(scene, low, device)
    down = imresize(coarse[_network(scene)], size=(guide.shape[1], guide.shape[2]))
    angles = sam_map(down, guide).cpu().numpy()
    g = guide.shape[1] // scene.cube.shape[1]  # guide pixels per LR pixel
    keep = nearest_up(np.ones(scene.cube.shape[1:], dtype=bool) if scene.valid is None else scene.valid, g)
    inside = np.zeros_like(keep)
    inside[core.top * g : (core.top + core.height) * g, core.left * g : (core.left + core.width) * g] = True
    selected = angles[keep & inside]
    return np.asarray([selected.sum(), selected.size], dtype=np.float64).reshape(2, 1, 1)


def _block_result(block: np.ndarray, block_info: Any = None, weight: float | None = None, **common: Any) -> np.ndarray:
    """The block's output core in the input's units: coarse, or the back-projection with the scene's weight."""
    route = _Route.of(common)
    options = route.options
    scene, core = _block_scene(block, block_info, common, route)
    coarse, low, device = _coarse_pair(scene, route)
    result = coarse
    if options.stage != "coarse" and weight is not None:
        network = _network(scene)
        guide = _guide(scene, low, device)
        high = coarse[network]
        down = imresize(high, size=(guide.shape[1], guide.shape[2]))
        fine = high + imresize(
            torch.tensor(weight, dtype=torch.float64).to(high.dtype) * (guide - down), size=high.shape[1:]
        )
        floor = floor_tensor(scene.meta.band_floor, device)
        result = coarse.clone()
        result[network] = clip_range(fine, floor[network] if floor is not None else None) if options.clip else fine
    raw = _raw(scene, result.cpu().numpy(), options)
    s = options.scale
    return raw[:, core.top * s : (core.top + core.height) * s, core.left * s : (core.left + core.width) * s]


def _wrap(obj: Any, cube: Any, values: Any, band: str, rows: str, cols: str, scale: int, request: _Request) -> Any:
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
    attrs.update({"dualsr_scale": scale, "dualsr_stage": request.stage, "dualsr_weights": request.weights})
    out = xr.DataArray(values, dims=(band, rows, cols), coords=coords, attrs=attrs, name=obj.name)
    out = out.transpose(*obj.dims)
    out.encoding = {k: v for k, v in obj.encoding.items() if k in ("_FillValue", "dtype", "scale_factor", "add_offset")}
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
    from dualsr_deploy.data.netcdf_writers import _centres as centres

    if values.dtype.kind not in "fiu":
        return np.repeat(values, scale)
    return centres(values.astype(np.float64), scale).astype(values.dtype if values.dtype.kind == "f" else np.float64)


def _resample_values(values: np.ndarray, scale: int) -> np.ndarray:
    from dualsr_deploy.data.netcdf_writers import _linear

    return _linear(values.astype(np.float64), scale).astype(values.dtype if values.dtype.kind == "f" else np.float64)


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
