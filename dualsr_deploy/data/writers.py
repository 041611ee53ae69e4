"""Write scenes: HDF5, NumPy, MATLAB (v5, or v7.3 past 2 GB), GeoTIFF/TIFF and ENVI, always atomically.

Every writer stores the scene's metadata (source, wavelengths, georeferencing, the caller's attributes such as
model, scale, stage and backend) where the format can hold it, so reading the file back gives it again.
``units="source"`` writes the values back in the source's units and dtype (``Scene.raw()``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.atomic import atomic_hdf5, atomic_output
from dualsr_deploy.data.hdf5_layout import HDF5_COMPRESSION, MATLAB_CLASS, mat_header, matlab_provenance
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.data.validity import representable
from dualsr_deploy.errors import DataError

WRITE_SUFFIXES = (".h5", ".hdf5", ".nc", ".npy", ".mat", ".tif", ".tiff", ".hdr", ".zarr")
COG_SUFFIX = ".cog.tif"  # a Cloud-Optimized GeoTIFF (GDAL's COG driver) rather than a plain GeoTIFF
MAT_V5_LIMIT = 2**31 - 1  # MATLAB v5 cannot hold a variable of 2 GB or more


def write_scene(
    path: str | os.PathLike[str],
    scene: Scene,
    *,
    attrs: Mapping[str, str] | None = None,
    units: str = "normalised",
    mat_version: str | None = None,
    zarr_format: int | None = None,
) -> Path:
    """Write ``scene`` to ``path`` in the format its suffix names; return the path written.

    ``attrs``: extra string attributes (e.g. ``model``, ``scale``, ``stage``, ``backend``) stored with the cube.
    ``units``: ``normalised`` (float32 in [0, 1]) or ``source`` (the source's units and dtype).
    ``mat_version``: ``5`` or ``7.3`` for ``.mat``; default 7.3 only when the cube passes 2 GB.
    ``zarr_format``: 2 or 3 for ``.zarr``; default 3 where the installed zarr-python writes it.
    A name ending in ``.cog.tif`` is written as a Cloud-Optimized GeoTIFF.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise DataError(f"{target}: cannot write {suffix or 'files without a suffix'}; use one of {WRITE_SUFFIXES}")
    if units not in ("normalised", "source"):
        raise DataError(f"units must be 'normalised' or 'source', not {units!r}")
    data = scene.normalised() if units == "normalised" else scene.raw()
    meta = scene.meta.replace(attrs={**scene.meta.attrs, **(attrs or {}), "dualsr_units": units})
    meta_json = meta.to_json()
    if suffix in (".h5", ".hdf5"):
        _write_hdf5(target, data, meta_json, meta.attrs, scene, units)
    elif suffix == ".nc":
        from dualsr_deploy.data.netcdf_writers import write_aviris3, write_emit

        (write_aviris3 if scene.meta.format == "aviris3" else write_emit)(target, data, meta_json, scene)
    elif suffix == ".npy":
        _write_npy(target, data, meta_json)
    elif suffix == ".mat":
        version = mat_version or ("7.3" if data.nbytes > MAT_V5_LIMIT else "5")
        if version not in ("5", "7.3"):
            raise DataError(f"mat_version must be '5' or '7.3', not {version!r}")
        if version == "5" and data.nbytes > MAT_V5_LIMIT:
            raise DataError(f"{target}: {data.nbytes / 2**30:.1f} GiB does not fit MATLAB v5; use mat_version='7.3'")
        (_write_mat_v5 if version == "5" else _write_mat_v73)(target, data, meta_json)
    elif suffix in (".tif", ".tiff"):  # through GDAL, georeferenced or not: band names, wavelengths, no-data
        cog = target.name.lower().endswith(COG_SUFFIX)  # where GDAL, QGIS and rasterio look for them
        _write_geotiff(target, data, meta_json, dataclasses.replace(scene, meta=meta), units, cog=cog)
    elif suffix == ".zarr":
        from dualsr_deploy.data.zarr_writer import write_zarr

        zarr_scene = dataclasses.replace(scene, meta=meta)
        write_zarr(target, data, meta_json, zarr_scene, units, declared_factor(meta, units), zarr_format)
    else:
        _write_envi(target, data, meta_json, dataclasses.replace(scene, meta=meta), units)
    return target


def declared_factor(meta: SceneMeta, units: str) -> float | None:
    """The factor to divide by that a file in the source's units declares (as its input did), else None."""
    if units == "source" and meta.normalisation.startswith("declared:"):
        return meta.scale_factor
    return None


def _write_hdf5(
    target: Path,
    data: np.ndarray,
    meta_json: str,
    attrs: Mapping[str, str],
    scene: Scene,
    units: str,
) -> None:
    import h5py

    _, h, w = data.shape
    with atomic_hdf5(target) as memory, h5py.File(memory, "w") as handle:
        dataset = handle.create_dataset("cube", data=data, chunks=(1, min(h, 256), min(w, 256)), **HDF5_COMPRESSION)
        hdf5_attrs(dataset, meta_json, scene.meta.replace(attrs=dict(attrs)), units)


def hdf5_attrs(dataset: Any, meta_json: str, meta: SceneMeta, units: str) -> None:
    """The attributes of a written HDF5 cube: layout, units, provenance, the caller's, the band metadata, the
    no-data value (``_FillValue``, where the dtype holds it) and the bad bands."""
    dataset.attrs["layout"] = "chw"
    dataset.attrs["units"] = units
    dataset.attrs["dualsr_scene"] = meta_json
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


def _write_npy(target: Path, data: np.ndarray, meta_json: str) -> None:
    from dualsr_deploy.data.readers.numpy_files import sidecar

    with atomic_output(target) as tmp:
        with tmp.open("wb") as handle:
            np.save(handle, data, allow_pickle=False)
        with atomic_output(sidecar(target)) as meta_tmp:
            meta_tmp.write_text(meta_json)


def _write_mat_v5(target: Path, data: np.ndarray, meta_json: str) -> None:
    import scipy.io

    with atomic_output(target) as tmp, tmp.open("wb") as handle:
        scipy.io.savemat(
            handle,
            {"cube": np.transpose(data, (1, 2, 0)), "dualsr_scene": meta_json},
            do_compression=True,
            oned_as="column",
        )


def _write_mat_v73(target: Path, data: np.ndarray, meta_json: str) -> None:
    """MATLAB v7.3: HDF5 behind a 512-byte MATLAB header, arrays stored with their axes reversed."""
    import h5py

    matlab_class = MATLAB_CLASS.get(str(data.dtype))
    if matlab_class is None:
        raise DataError(f"{target}: cannot write {data.dtype} to MATLAB v7.3")
    _, h, w = data.shape
    with atomic_hdf5(target) as memory:
        with h5py.File(memory, "w", userblock_size=512) as handle:
            cube = handle.create_dataset(
                "cube", data=np.transpose(data, (0, 2, 1)), chunks=(1, min(w, 256), min(h, 256)), **HDF5_COMPRESSION
            )
            cube.attrs["MATLAB_class"] = np.bytes_(matlab_class)
            matlab_provenance(handle, meta_json)
        block = mat_header()
        memory.getbuffer()[: len(block)] = block


def _write_geotiff(target: Path, data: np.ndarray, meta_json: str, scene: Scene, units: str, *, cog: bool) -> None:
    from dualsr_deploy.data.geotiff_writer import write_geotiff

    write_geotiff(target, data, meta_json, scene, units, declared_factor(scene.meta, units), cog=cog)


def _write_envi(target: Path, data: np.ndarray, meta_json: str, scene: Scene, units: str) -> None:
    from dualsr_deploy.data.envi_writer import write_envi

    write_envi(target, data, meta_json, scene, units, declared_factor(scene.meta, units))
