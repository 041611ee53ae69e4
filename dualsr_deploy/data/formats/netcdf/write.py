"""Writing super-resolved NetCDF products back in their structure, with a netCDF library (``h5netcdf``): EMIT
granules and AVIRIS-3 orthorectified reflectance, by strips (:class:`NetcdfStrips`).

The output is valid netCDF-4, opened by netCDF4, xarray (h5netcdf and netcdf4 engines), ``ncdump`` and GDAL: every
dimension of the source is defined again in the group that defined it, at its new size; every variable is attached
to its dimensions; groups, attributes and ``_FillValue`` are kept. A source written without named dimensions (plain
HDF5, as some tools write it) gets EMIT's names for EMIT's variables (``downtrack``, ``crosstrack``, ``bands``,
``ortho_y``, ``ortho_x``) and netCDF's phony names elsewhere.

At ×s the two spatial dimensions of the cube grow ×s (and, for EMIT, the ortho grid of the GLT), and every variable
on them is resampled: the cube is the super-resolved data; 2-D floating fields on the grid (EMIT ``location/lat``,
``lon``, ``elev``) linearly at pixel centres; 1-D floating coordinate vectors on a grid dimension at the finer grid's
pixel centres; EMIT's GLT rebuilt for an ortho grid of pixel size ÷ s (output ortho cell (i, j) lies in input cell
(i // s, j // s), whose swath pixel (x, y) becomes the output swath pixel ((x − 1)·s + j mod s + 1,
(y − 1)·s + i mod s + 1), 0 staying no-data); anything else on a grid dimension repeated (nearest). GDAL's
``geotransform`` (array) and ``GeoTransform`` (text) attributes keep their origin with pixel terms ÷ s; the package's
provenance is the global attribute ``dualsr_scene``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.data.formats.chunk_writes import chunk_rows, write_region
from dualsr_deploy.data.formats.hdf5_layout import HDF5_COMPRESSION
from dualsr_deploy.data.formats.row import WriteOptions
from dualsr_deploy.data.formats.strips import StripWriter
from dualsr_deploy.data.remote_ranges import hdf5_source, is_vsi
from dualsr_deploy.data.scene import SceneMeta
from dualsr_deploy.data.validity import representable
from dualsr_deploy.errors import DataError

CHUNK = 64  # rows and columns of the cube's chunks (every band in each): fewer rows where writes carry fewer
SWATH_FIELDS = ("lat", "lon", "elev")
EMIT_CUBE_DIMS = ("downtrack", "crosstrack", "bands")
EMIT_ORTHO_DIMS = ("ortho_y", "ortho_x")
_HIDDEN_ATTRS = {"_FillValue", "DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid"}
_HIDDEN_ATTRS |= {"_Netcdf4Coordinates", "_nc3_strict", "_NCProperties"}


NETCDF_NEEDS = "NetCDF output rebuilds the structure of the EMIT or AVIRIS-3 product it came from"
NETCDF_SOURCES = frozenset({"emit", "aviris3"})  # the input formats a .nc output can be written for


@dataclass(frozen=True)
class _Product:
    """The NetCDF product a scene came from: its file, the cube's path and axis order, the phony dimensions to name
    and the GLT to rebuild."""

    source: Path
    cube: str
    layout: str
    renames: dict[str, tuple[str, ...]]
    glt: tuple[str, str] | None


def _product(target: Path, meta: SceneMeta) -> _Product:
    source = Path(meta.source)
    if meta.format == "aviris3":
        from dualsr_deploy.data.formats.netcdf.aviris3 import GROUP

        if not (is_vsi(source) or source.is_file()):
            raise DataError(f"{target}: {NETCDF_NEEDS}; its AVIRIS-3 source {source.name} is gone")
        return _Product(source, f"{GROUP}/reflectance", meta.layout, {}, None)
    if meta.format != "emit" or not (is_vsi(source) or source.is_file()):
        kind = f"a {meta.format} scene" if meta.format != "emit" else "an EMIT granule that is gone"
        raise DataError(f"{target}: {NETCDF_NEEDS}, and {source.name} is {kind}; write it in another format")
    name = meta.key or "reflectance"
    renames = {name: EMIT_CUBE_DIMS, **{f"location/{key}": EMIT_CUBE_DIMS[:2] for key in SWATH_FIELDS}}
    renames |= {"location/glt_x": EMIT_ORTHO_DIMS, "location/glt_y": EMIT_ORTHO_DIMS}
    renames |= {f"sensor_band_parameters/{key}": EMIT_CUBE_DIMS[2:] for key in ("wavelengths", "fwhm")}
    renames |= {"sensor_band_parameters/good_wavelengths": EMIT_CUBE_DIMS[2:]}
    return _Product(source, name, "hwc", renames, ("location/glt_x", "location/glt_y"))


class NetcdfStrips(StripWriter):
    """A super-resolved EMIT or AVIRIS-3 product: the source's structure written first with the cube left empty,
    then the cube filled by hyperslabs of rows in its own axis order."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, options: WriteOptions
    ) -> None:
        super().__init__(path, shape, dtype, meta, options)
        with self._removed_on_error():
            self.product = _product(path, meta)
            self.layout = self.product.layout
            row_chunk = chunk_rows(CHUNK, options.rows)
            self.out: Any = _rewrite(self._hdf5_target(), self.product, shape, meta.to_json(), self.dtype, row_chunk)
            self.cube = (
                self.out[self.product.cube]
                if "/" not in self.product.cube
                else _variables_dict(self.out)[self.product.cube]
            )
            self.row_block = self.cube.chunks[self.layout.index("h")]

    def write(self, first_row: int, rows: np.ndarray) -> None:
        """``rows (C, n, W)``: the cube's rows [first_row, first_row + n) in its own axis order."""
        index = [slice(None)] * 3
        index[self.layout.index("h")] = slice(first_row, first_row + rows.shape[1])
        values = np.transpose(rows, ["chw".index(axis) for axis in self.layout])
        dataset = getattr(self.cube, "_h5ds", None)  # h5netcdf's HDF5 dataset under the variable (not public API)
        if dataset is None:
            self.cube[tuple(index)] = values  # through h5netcdf, one thread, as before
            return
        write_region(dataset, tuple(index), values)  # chunks compressed in threads

    def _provenance_changed(self) -> None:
        self.out.attrs["dualsr_scene"] = _text(self.meta.to_json())

    def _finish(self) -> None:
        self._close()
        self._publish(self._hdf5_written(), self.path)

    def _close(self) -> None:
        if getattr(self, "out", None) is not None:
            self.out.close()
            self.out = None


Dim = tuple[str, str]  # (path of the group that defines it, name)


@dataclass
class _Plan:
    """What the copy needs to know: each variable's output dimensions, each dimension's output size."""

    scale: int
    grid: tuple[Dim, Dim] = (("", ""), ("", ""))  # the cube's row and column dimensions
    variable_dims: dict[str, tuple[Dim, ...]] = field(default_factory=dict)
    dim_sizes: dict[Dim, int] = field(default_factory=dict)
    resized: set[Dim] = field(default_factory=set)


def _variables(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, variable in group.variables.items():
        yield f"{prefix}{name}", variable
    for name, child in group.groups.items():
        yield from _variables(child, f"{prefix}{name}/")


def _group_path(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _phony(dims: tuple[str, ...]) -> bool:
    return any(dim.startswith("phony_dim_") for dim in dims)


def _plan(source: Path, src: Any, cube: str, layout: str, scale: int, renames: dict[str, tuple[str, ...]]) -> _Plan:
    """Each variable's dimensions as (defining group, name): named ones where netCDF's scoping finds them, phony ones
    renamed where ``renames`` names them (defined at the root, as EMIT does) or kept in the variable's group."""
    plan = _Plan(scale)
    for path, variable in _variables(src):
        original = tuple(variable.dimensions)
        wanted = renames.get(path)
        renamed = _phony(original) and wanted is not None and len(wanted) == len(original)
        group = _group_path(path)
        dims: list[Dim] = []
        for index, (name, size) in enumerate(zip(original, variable.shape, strict=True)):
            if renamed:
                assert wanted is not None
                dim = ("", wanted[index])
            elif name.startswith("phony_dim_"):
                dim = (group, name)
            else:
                dim = (_defining_group(src, group, name), name)
            known = plan.dim_sizes.setdefault(dim, int(size))
            if known != size:
                raise DataError(f"{source}: dimension {dim[1]} is {known} long, but {path} has {size} along it")
            dims.append(dim)
        plan.variable_dims[path] = tuple(dims)
    if cube not in plan.variable_dims:
        raise DataError(f"{source}: no variable {cube}")
    cube_dims = plan.variable_dims[cube]
    plan.grid = (cube_dims[layout.index("h")], cube_dims[layout.index("w")])
    plan.resized = set(plan.grid)
    if _phony(tuple(name for _, name in plan.grid)):
        # Without named dimensions nothing ties a coordinate vector to the cube's grid but its length: a phony
        # dimension as long as the grid's rows or columns (and not the cube's band axis) is taken as on the grid.
        lengths = {plan.dim_sizes[dim] for dim in plan.grid}
        band_axis = cube_dims[layout.index("c")]
        for dim, size in plan.dim_sizes.items():
            if _phony((dim[1],)) and size in lengths and dim != band_axis:
                plan.resized.add(dim)
    return plan


def _defining_group(src: Any, group: str, dim: str) -> str:
    """The path of the innermost group at or above ``group`` that defines ``dim`` (netCDF's scoping)."""
    parts = group.split("/") if group else []
    while True:
        node = src
        for part in parts:
            node = node.groups[part]
        if dim in node.dimensions:
            return "/".join(parts)
        if not parts:
            return ""
        parts.pop()


def _rewrite(
    target: Path | io.BytesIO,
    product: _Product,
    shape: tuple[int, ...],
    meta_json: str,
    dtype: np.dtype,
    row_chunk: int = 64,
) -> Any:
    """``product``'s structure at ``target`` for a ``(C, s·H, s·W)`` cube of ``dtype``, the cube variable left empty
    (chunked ``row_chunk`` rows by :data:`CHUNK` columns by every band); the open file is returned for its rows to be
    written."""
    h5netcdf = _import_h5netcdf()
    source, cube = product.source, product.cube
    try:
        src = h5netcdf.File(hdf5_source(source), "r", phony_dims="sort")  # a remote granule: by range
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{source}: not readable as netCDF-4 ({error})") from None
    with src:
        cube_var = _variables_dict(src).get(cube)
        if cube_var is None:
            raise DataError(f"{source}: no variable {cube}")
        sizes = dict(zip(product.layout, cube_var.shape, strict=True))
        rows, cols = sizes["h"], sizes["w"]
        scale = shape[1] // rows
        if scale < 1 or shape[1] != scale * rows or shape[2] != scale * cols:
            raise DataError(f"{target}: {shape} is not a whole multiple of the {rows}×{cols} grid of {source}")
        plan = _plan(source, src, cube, product.layout, scale, product.renames)
        glt = product.glt
        glt_pair = glt if glt is not None and all(path in plan.variable_dims for path in glt) else None
        if glt_pair is not None:
            plan.resized |= set(plan.variable_dims[glt_pair[0]])
        rebuilt = _rebuilt_glt(src, glt_pair, scale)
        order = ["chw".index(axis) for axis in product.layout]
        # a stand-in with the cube's shape and dtype: nothing is written from it
        cube_data = np.broadcast_to(np.zeros((), dtype=dtype), tuple(shape[axis] for axis in order))

        def values_of(path: str, variable: Any) -> np.ndarray:
            if path == cube:
                return cube_data
            if path in rebuilt:
                return rebuilt[path].astype(variable.dtype)
            return _resampled(np.asarray(variable[()]), plan.variable_dims[path], plan)

        out = h5netcdf.File(target, "w")
        try:
            _copy_group(src, out, "", plan, values_of, (cube, row_chunk))
            for key, value in src.attrs.items():
                if key not in _HIDDEN_ATTRS:
                    out.attrs[key] = _text(_geotransform(value, scale) if key == "geotransform" else value, src, key)
            out.attrs["dualsr_scene"] = _text(meta_json)
        except BaseException:
            out.close()
            raise
    return out


def _variables_dict(src: Any) -> dict[str, Any]:
    return dict(_variables(src))


def _import_h5netcdf() -> Any:
    import h5netcdf  # a dependency of the package (pure Python, on h5py)

    return h5netcdf


def _copy_group(
    src: Any,
    out: Any,
    path: str,
    plan: _Plan,
    values_of: Callable[[str, Any], np.ndarray],
    cube_chunk: tuple[str, int],
) -> None:
    cube, row_chunk = cube_chunk
    for (group, dim), size in plan.dim_sizes.items():
        if group == path:
            out.dimensions[dim] = size * (plan.scale if (group, dim) in plan.resized else 1)
    for key, value in src.attrs.items():
        if path and key not in _HIDDEN_ATTRS:
            out.attrs[key] = _text(value, src, key)
    prefix = f"{path}/" if path else ""
    for name, variable in src.variables.items():
        full = f"{prefix}{name}"
        values = values_of(full, variable)
        fill = variable.attrs.get("_FillValue")
        kwargs: dict[str, Any] = {}
        if fill is not None and representable(float(np.ravel(fill)[0]), values.dtype):
            kwargs["fillvalue"] = np.asarray(np.ravel(fill)[0], dtype=values.dtype)
        if values.ndim >= 2 and values.dtype.kind in "fiu":
            kwargs |= HDF5_COMPRESSION
            if full == cube:
                kwargs["chunks"] = tuple(
                    min(extent, row_chunk if dim == plan.grid[0] else CHUNK) if dim in plan.grid else extent
                    for dim, extent in zip(plan.variable_dims[full], values.shape, strict=True)
                )
        dims = tuple(dim for _, dim in plan.variable_dims[full])
        if full == cube:  # its rows are written by hyperslabs afterwards
            written = out.create_variable(name, dimensions=dims, dtype=values.dtype, **kwargs)
        else:
            written = out.create_variable(name, dimensions=dims, data=values, **kwargs)
        for key, value in variable.attrs.items():
            if key not in _HIDDEN_ATTRS:
                written.attrs[key] = _text(
                    _text_geotransform(value, plan.scale) if key == "GeoTransform" else value, variable, key
                )
    for name, child in src.groups.items():
        _copy_group(child, out.create_group(name), f"{prefix}{name}", plan, values_of, cube_chunk)


def _text(value: Any, holder: Any = None, key: str = "") -> Any:
    """A text attribute in the type the source gave it: netCDF's ``char`` (what netCDF4 and the EMIT SDS write, and
    ours) unless the source's was a variable-length ``string``."""
    if not isinstance(value, str):
        return value
    import h5py

    h5_object = getattr(holder, "_h5ds", None) or getattr(holder, "_h5group", None)
    if h5_object is not None and key in h5_object.attrs:
        kind = h5_object.attrs.get_id(key).get_type()
        if isinstance(kind, h5py.h5t.TypeStringID) and kind.is_variable_str():
            return value
    return np.bytes_(value.encode())


def _resampled(values: np.ndarray, dims: tuple[Dim, ...], plan: _Plan) -> np.ndarray:
    """A variable on the output grid: 2-D floating fields on (rows, columns) linearly, 1-D floating coordinate
    vectors at the finer pixel centres, anything else on a resized dimension repeated."""
    axes = [axis for axis, dim in enumerate(dims) if dim in plan.resized]
    if not axes:
        return values
    floating = values.dtype.kind == "f"
    if floating and values.ndim == 2 and len(axes) == 2:
        return linear_resample(values.astype(np.float64), plan.scale).astype(values.dtype)
    if floating and values.ndim == 1:
        return pixel_centres(values.astype(np.float64), plan.scale).astype(values.dtype)
    for axis in axes:
        values = np.repeat(values, plan.scale, axis=axis)
    return values


def _rebuilt_glt(src: Any, glt: tuple[str, str] | None, scale: int) -> dict[str, np.ndarray]:
    if glt is None:
        return {}
    variables = _variables_dict(src)
    glt_x, glt_y = (np.asarray(variables[path][()]) for path in glt)
    new_x, new_y = rebuild_glt(glt_x, glt_y, scale)
    return {glt[0]: new_x, glt[1]: new_y}


def rebuild_glt(glt_x: np.ndarray, glt_y: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The GLT of an ortho grid ``scale`` times finer, onto a swath ``scale`` times finer (1-based, 0 = no data; NaN,
    as xarray decodes the GLT's ``_FillValue`` 0, is no data too)."""
    up_x = np.repeat(np.repeat(np.nan_to_num(glt_x, nan=0).astype(np.int64), scale, axis=0), scale, axis=1)
    up_y = np.repeat(np.repeat(np.nan_to_num(glt_y, nan=0).astype(np.int64), scale, axis=0), scale, axis=1)
    rows, cols = np.indices(up_x.shape)
    valid = (up_x != 0) & (up_y != 0)
    new_x = np.where(valid, (np.abs(up_x) - 1) * scale + cols % scale + 1, 0) * np.sign(up_x)
    new_y = np.where(valid, (np.abs(up_y) - 1) * scale + rows % scale + 1, 0) * np.sign(up_y)
    return new_x, new_y


def linear_resample(values: np.ndarray, scale: int) -> np.ndarray:
    """Linear resampling to a grid ``scale`` times finer, at pixel centres (edges held)."""
    from scipy.ndimage import zoom

    return np.asarray(zoom(values, scale, order=1, mode="nearest", grid_mode=True))


def pixel_centres(values: np.ndarray, scale: int) -> np.ndarray:
    """A regularly spaced coordinate vector of pixel centres, ``scale`` times finer."""
    if values.size < 2:
        return np.repeat(values, scale)
    step = (values[-1] - values[0]) / (values.size - 1)
    positions = (np.arange(values.size * scale) + 0.5) / scale - 0.5
    return np.asarray(values[0] + step * positions)


def _geotransform(value: Any, scale: int) -> Any:
    """GDAL's ``[x0, dx, rx, y0, ry, dy]``: the same origin, pixel sizes and rotation terms ÷ scale."""
    array = np.asarray(value, dtype=np.float64)
    if array.size != 6:
        return value
    x0, dx, rx, y0, ry, dy = array.ravel()
    return np.asarray([x0, dx / scale, rx / scale, y0, ry / scale, dy / scale], dtype=np.asarray(value).dtype)


def _text_geotransform(value: Any, scale: int) -> Any:
    """GDAL's ``GeoTransform`` attribute (text ``x0 dx rx y0 ry dy``) with the pixel terms ÷ scale."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        x0, dx, rx, y0, ry, dy = (float(v) for v in text.split())
    except ValueError:
        return value
    return " ".join(repr(v) for v in (x0, dx / scale, rx / scale, y0, ry / scale, dy / scale))


__all__ = ["NETCDF_NEEDS", "NETCDF_SOURCES", "NetcdfStrips", "linear_resample", "pixel_centres", "rebuild_glt"]
