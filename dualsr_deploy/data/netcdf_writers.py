"""Writing super-resolved NetCDF products back in their structure: EMIT granules (:func:`write_emit`) and AVIRIS-3
orthorectified reflectance (:func:`write_aviris3`).

An EMIT granule is written back in EMIT's structure (see :mod:`dualsr_deploy.data.readers.emit`).

At ×s: the cube (``reflectance``/``radiance``, downtrack × crosstrack × bands) with its attributes;
``sensor_band_parameters`` copied; ``location/lat``, ``lon``, ``elev`` resampled to the output swath grid (linear, at
pixel centres); the GLT rebuilt for an ortho grid of pixel size ÷ s: output ortho cell (i, j) lies in input cell
(i // s, j // s), whose swath pixel (x, y) becomes the output swath pixel ((x − 1)·s + j mod s + 1,
(y − 1)·s + i mod s + 1), 0 staying no-data; the global attributes kept with ``geotransform``'s pixel size ÷ s,
plus ours (``dualsr_scene``). Other datasets and groups of the granule are copied as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.errors import DataError

SWATH_FIELDS = ("lat", "lon", "elev")


def write_emit(target: Path, data: np.ndarray, meta_json: str, scene: Scene) -> None:
    """``data (C, s·H, s·W)`` (already in the units to write) into ``target`` with the structure of the EMIT granule
    ``scene.meta.source``."""
    import h5py

    source = Path(scene.meta.source)
    if scene.meta.format != "emit" or not source.is_file():
        raise DataError(
            f"{target}: the EMIT structure is written from an EMIT granule, and {source} is not one; choose another "
            "--format"
        )
    with h5py.File(source, "r") as src:
        name = scene.meta.key or "reflectance"
        rows, cols, _bands = src[name].shape
        scale = data.shape[1] // rows
        if scale < 1 or data.shape[1] != scale * rows or data.shape[2] != scale * cols:
            raise DataError(f"{target}: {data.shape} is not a whole multiple of the granule's {rows}×{cols} swath")
        with atomic_output(target) as tmp, h5py.File(tmp, "w") as out:
            cube = out.create_dataset(
                name,
                data=np.ascontiguousarray(np.transpose(data, (1, 2, 0))),
                chunks=(min(256, data.shape[1]), min(256, data.shape[2]), 1),
                compression="gzip",
                compression_opts=4,
            )
            for key, value in src[name].attrs.items():
                if key != "_FillValue" or np.asarray(value).dtype == data.dtype:
                    cube.attrs[key] = value
            for key in src:
                if key == name:
                    continue
                if key == "location" and isinstance(src[key], h5py.Group):
                    _location(src[key], out.create_group(key), scale, (rows, cols))
                else:
                    src.copy(src[key], out, name=key)
            for key, value in src.attrs.items():
                out.attrs[key] = _geotransform(value, scale) if key == "geotransform" else value
            out.attrs["dualsr_scene"] = meta_json


def _location(src: Any, out: Any, scale: int, swath: tuple[int, int]) -> None:
    glt_x, glt_y = src.get("glt_x"), src.get("glt_y")
    for key in src:
        item = src[key]
        if key in ("glt_x", "glt_y") and glt_x is not None and glt_y is not None:
            continue
        if key in SWATH_FIELDS and item.shape == swath:
            resampled = _linear(np.asarray(item[()], dtype=np.float64), scale).astype(item.dtype)
            dataset = out.create_dataset(key, data=resampled, compression="gzip")
            for name, value in item.attrs.items():
                dataset.attrs[name] = value
        else:
            src.copy(item, out, name=key)
    if glt_x is not None and glt_y is not None:
        new_x, new_y = rebuild_glt(np.asarray(glt_x[()]), np.asarray(glt_y[()]), scale)
        for key, values, original in (("glt_x", new_x, glt_x), ("glt_y", new_y, glt_y)):
            dataset = out.create_dataset(key, data=values.astype(original.dtype), compression="gzip")
            for name, value in original.attrs.items():
                dataset.attrs[name] = value


def rebuild_glt(glt_x: np.ndarray, glt_y: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The GLT of an ortho grid ``scale`` times finer, onto a swath ``scale`` times finer (1-based, 0 = no data)."""
    up_x = np.repeat(np.repeat(glt_x.astype(np.int64), scale, axis=0), scale, axis=1)
    up_y = np.repeat(np.repeat(glt_y.astype(np.int64), scale, axis=0), scale, axis=1)
    rows, cols = np.indices(up_x.shape)
    valid = (up_x != 0) & (up_y != 0)
    new_x = np.where(valid, (np.abs(up_x) - 1) * scale + cols % scale + 1, 0) * np.sign(up_x)
    new_y = np.where(valid, (np.abs(up_y) - 1) * scale + rows % scale + 1, 0) * np.sign(up_y)
    return new_x, new_y


def _linear(values: np.ndarray, scale: int) -> np.ndarray:
    """Linear resampling to a grid ``scale`` times finer, at pixel centres (edges held)."""
    from scipy.ndimage import zoom

    return np.asarray(zoom(values, scale, order=1, mode="nearest", grid_mode=True))


def _geotransform(value: Any, scale: int) -> Any:
    """GDAL's ``[x0, dx, rx, y0, ry, dy]``: the same origin, pixel sizes and rotation terms ÷ scale."""
    array = np.asarray(value, dtype=np.float64)
    if array.size != 6:
        return value
    x0, dx, rx, y0, ry, dy = array.ravel()
    return np.asarray([x0, dx / scale, rx / scale, y0, ry / scale, dy / scale], dtype=np.asarray(value).dtype)


def write_aviris3(target: Path, data: np.ndarray, meta_json: str, scene: Scene) -> None:
    """``data (C, s·H, s·W)`` into ``target`` with the structure of the AVIRIS-3 file ``scene.meta.source``: the cube
    in the source's axis order, ``wavelength``/``fwhm`` copied, coordinate vectors and 2-D fields of the grid
    resampled linearly at pixel centres, ``GeoTransform`` attributes ÷ s, everything else copied."""
    import h5py

    from dualsr_deploy.data.readers.aviris3 import GROUP

    source = Path(scene.meta.source)
    if scene.meta.format != "aviris3" or not source.is_file():
        raise DataError(f"{target}: the AVIRIS-3 structure is written from an AVIRIS-3 file; choose another --format")
    layout = scene.meta.layout
    with h5py.File(source, "r") as src:
        cube = src[GROUP]["reflectance"]
        sizes = dict(zip(layout, cube.shape, strict=True))
        rows, cols = sizes["h"], sizes["w"]
        scale = data.shape[1] // rows
        if data.shape[1] != scale * rows or data.shape[2] != scale * cols:
            raise DataError(f"{target}: {data.shape} is not a whole multiple of the file's {rows}×{cols} grid")
        with atomic_output(target) as tmp, h5py.File(tmp, "w") as out:
            _copy_resampled(src, out, scale, (rows, cols), skip=GROUP)
            group = out.create_group(GROUP)
            for key, value in src[GROUP].attrs.items():
                group.attrs[key] = value
            _copy_resampled(src[GROUP], group, scale, (rows, cols), skip="reflectance")
            written = group.create_dataset(
                "reflectance",
                data=np.ascontiguousarray(np.transpose(data, ["chw".index(axis) for axis in layout])),
                compression="gzip",
                compression_opts=4,
            )
            for key, value in cube.attrs.items():
                if key != "_FillValue" or np.asarray(value).dtype == data.dtype:
                    written.attrs[key] = value
            for key, value in src.attrs.items():
                out.attrs[key] = value
            out.attrs["dualsr_scene"] = meta_json


def _copy_resampled(src: Any, out: Any, scale: int, grid: tuple[int, int], *, skip: str) -> None:
    """Copy the items of ``src`` into ``out``: rows/columns coordinate vectors and 2-D fields on the grid resampled,
    ``GeoTransform`` attributes ÷ scale, the rest as it is; ``skip`` is written by the caller."""
    import h5py

    for key in src:
        if key == skip:
            continue
        item = src[key]
        if isinstance(item, h5py.Group):
            src.copy(item, out, name=key)
            continue
        values = item[()]
        if item.ndim == 1 and item.shape[0] in grid and np.issubdtype(item.dtype, np.number):
            values = _centres(np.asarray(values, dtype=np.float64), scale).astype(item.dtype)
        elif item.shape == grid and np.issubdtype(item.dtype, np.floating):
            values = _linear(np.asarray(values, dtype=np.float64), scale).astype(item.dtype)
        dataset = out.create_dataset(key, data=values)
        for name, value in item.attrs.items():
            dataset.attrs[name] = _text_geotransform(value, scale) if name == "GeoTransform" else value


def _centres(values: np.ndarray, scale: int) -> np.ndarray:
    """A regularly spaced coordinate vector of pixel centres, ``scale`` times finer."""
    if values.size < 2:
        return np.repeat(values, scale)
    step = (values[-1] - values[0]) / (values.size - 1)
    positions = (np.arange(values.size * scale) + 0.5) / scale - 0.5
    return np.asarray(values[0] + step * positions)


def _text_geotransform(value: Any, scale: int) -> Any:
    """GDAL's ``GeoTransform`` attribute (text ``x0 dx rx y0 ry dy``) with the pixel terms ÷ scale."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        x0, dx, rx, y0, ry, dy = (float(v) for v in text.split())
    except ValueError:
        return value
    return " ".join(repr(v) for v in (x0, dx / scale, rx / scale, y0, ry / scale, dy / scale))


__all__ = ["rebuild_glt", "write_aviris3", "write_emit"]
