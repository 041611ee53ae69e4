"""Write scenes: HDF5, NumPy, MATLAB (v5, or v7.3 past 2 GB), GeoTIFF/TIFF and ENVI, always atomically.

Every writer stores the scene's metadata (source, wavelengths, georeferencing, the caller's attributes such as
model, scale, stage and backend) where the format can hold it, so reading the file back gives it again.
``units="source"`` writes the values back in the source's units and dtype (``Scene.raw()``).
"""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.data.validity import representable
from dualsr_deploy.errors import DataError

WRITE_SUFFIXES = (".h5", ".hdf5", ".nc", ".npy", ".mat", ".tif", ".tiff", ".hdr")
MAT_V5_LIMIT = 2**31 - 1  # MATLAB v5 cannot hold a variable of 2 GB or more


def write_scene(
    path: str | os.PathLike[str],
    scene: Scene,
    *,
    attrs: Mapping[str, str] | None = None,
    units: str = "normalised",
    mat_version: str | None = None,
) -> Path:
    """Write ``scene`` to ``path`` in the format its suffix names; return the path written.

    ``attrs``: extra string attributes (e.g. ``model``, ``scale``, ``stage``, ``backend``) stored with the cube.
    ``units``: ``normalised`` (float32 in [0, 1]) or ``source`` (the source's units and dtype).
    ``mat_version``: ``5`` or ``7.3`` for ``.mat``; default 7.3 only when the cube passes 2 GB.
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
    elif suffix in (".tif", ".tiff"):
        if meta.georef is not None:
            _write_geotiff(target, data, meta_json, scene, units)
        else:
            _write_tiff(target, data, meta_json)
    else:
        _write_envi(target, data, meta_json, scene, units)
    return target


def _declared_factor(scene: Scene, units: str) -> float | None:
    """The factor to divide by that a file in the source's units declares (as its input did), else None."""
    if units == "source" and scene.meta.normalisation.startswith("declared:"):
        return scene.meta.scale_factor
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
    with atomic_output(target) as tmp, h5py.File(tmp, "w") as handle:
        dataset = handle.create_dataset(
            "cube",
            data=data,
            chunks=(1, min(h, 256), min(w, 256)),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        dataset.attrs["layout"] = "chw"
        dataset.attrs["units"] = units
        dataset.attrs["dualsr_scene"] = meta_json
        for key, value in attrs.items():
            dataset.attrs[key] = value
        meta = scene.meta
        if meta.wavelengths is not None:
            dataset.attrs["wavelengths"] = np.asarray(meta.wavelengths, dtype=np.float64)
        if meta.fwhm is not None:
            dataset.attrs["fwhm"] = np.asarray(meta.fwhm, dtype=np.float64)
        if meta.nodata is not None and representable(meta.nodata, data.dtype):
            dataset.attrs["_FillValue"] = np.asarray(meta.nodata, dtype=data.dtype)
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


_MATLAB_CLASS = {"float64": "double", "float32": "single", "uint8": "uint8", "uint16": "uint16", "int16": "int16"}


def _write_mat_v73(target: Path, data: np.ndarray, meta_json: str) -> None:
    """MATLAB v7.3: HDF5 behind a 512-byte MATLAB header, arrays stored with their axes reversed."""
    import h5py

    matlab_class = _MATLAB_CLASS.get(str(data.dtype))
    if matlab_class is None:
        raise DataError(f"{target}: cannot write {data.dtype} to MATLAB v7.3")
    _, h, w = data.shape
    with atomic_output(target) as tmp:
        with h5py.File(tmp, "w", userblock_size=512) as handle:
            cube = handle.create_dataset(
                "cube", data=np.transpose(data, (0, 2, 1)), chunks=(1, min(w, 256), min(h, 256)), compression="gzip"
            )
            cube.attrs["MATLAB_class"] = np.bytes_(matlab_class)
            chars = np.frombuffer(meta_json.encode("utf-16-le"), dtype=np.uint16).reshape(-1, 1)
            text = handle.create_dataset("dualsr_scene", data=chars)
            text.attrs["MATLAB_class"] = np.bytes_("char")
            text.attrs["MATLAB_int_decode"] = np.int32(2)
        created = datetime.datetime.now(datetime.UTC).strftime("%a %b %d %H:%M:%S %Y")
        header = f"MATLAB 7.3 MAT-file, Platform: dualsr-deploy, Created on: {created} HDF5 schema 1.00 ."
        block = header.encode().ljust(116) + bytes(8) + b"\x00\x02IM"
        with tmp.open("r+b") as raw:
            raw.write(block)


def _write_tiff(target: Path, data: np.ndarray, meta_json: str) -> None:
    import tifffile

    with atomic_output(target) as tmp:
        tifffile.imwrite(
            tmp,
            data,
            photometric="minisblack",
            planarconfig="separate",
            compression="zlib",
            description=meta_json,
            metadata=None,
        )


def _write_geotiff(target: Path, data: np.ndarray, meta_json: str, scene: Scene, units: str) -> None:
    from dualsr_deploy.data.readers.tiff import import_rasterio

    rasterio = import_rasterio()
    from affine import Affine

    georef = scene.meta.georef
    assert georef is not None
    c, h, w = data.shape
    profile = {
        "driver": "GTiff",
        "count": c,
        "height": h,
        "width": w,
        "dtype": str(data.dtype),
        "transform": Affine(*georef.transform),
        "crs": georef.crs,
        "compress": "deflate",
        "tiled": h >= 256 and w >= 256,
        "interleave": "band",
    }
    meta = scene.meta
    if meta.nodata is not None and representable(meta.nodata, data.dtype):
        profile["nodata"] = meta.nodata
    tags = {"DUALSR_SCENE": meta_json}
    if meta.wavelengths is not None:
        tags["wavelengths"] = ",".join(repr(v) for v in meta.wavelengths)
    factor = _declared_factor(scene, units)
    with atomic_output(target) as tmp, rasterio.open(tmp, "w", **profile) as dataset:
        dataset.write(data)
        dataset.update_tags(**tags)
        for band in range(c):  # per-band tags as EnMAP and GDAL's ENVI driver write them
            band_tags = {"bbl": "0" if band in meta.bad_bands else "1"}
            if meta.wavelengths is not None:
                band_tags["wavelength"] = repr(meta.wavelengths[band])
            if meta.fwhm is not None:
                band_tags["fwhm"] = repr(meta.fwhm[band])
            dataset.update_tags(band + 1, **band_tags)
            if meta.band_names is not None:
                dataset.set_band_description(band + 1, meta.band_names[band])
        if units == "source" and (meta.band_gains is not None or meta.band_offsets is not None):
            dataset.scales = list(meta.band_gains or (1.0,) * c)
            dataset.offsets = list(meta.band_offsets or (0.0,) * c)
        elif factor is not None:
            dataset.scales = [1.0 / factor] * c
            dataset.offsets = [0.0] * c


def _write_envi(target: Path, data: np.ndarray, meta_json: str, scene: Scene, units: str) -> None:
    from dualsr_deploy.data.readers.envi import META_KEY, PROJECTION_KEY, import_envi, map_info

    envi = import_envi()
    header = target.with_suffix(".hdr")
    image = target.with_suffix(".img")
    metadata: dict[str, object] = {
        "description": "written by dualsr-deploy",
        META_KEY: base64.b64encode(meta_json.encode()).decode(),
    }
    if scene.meta.wavelengths is not None:
        metadata["wavelength"] = [repr(v) for v in scene.meta.wavelengths]
        metadata["wavelength units"] = "Nanometers"
    meta = scene.meta
    if meta.band_names is not None:
        metadata["band names"] = list(meta.band_names)
    if meta.fwhm is not None:
        metadata["fwhm"] = [repr(v) for v in meta.fwhm]
    if meta.nodata is not None and representable(meta.nodata, data.dtype):
        metadata["data ignore value"] = repr(meta.nodata)
    if meta.bad_bands:
        metadata["bbl"] = ["0" if band in meta.bad_bands else "1" for band in range(data.shape[0])]
    factor = _declared_factor(scene, units)
    if factor is not None:
        metadata["reflectance scale factor"] = repr(factor)
    if units == "source" and meta.band_gains is not None:
        metadata["data gain values"] = [repr(v) for v in meta.band_gains]
    if units == "source" and meta.band_offsets is not None:
        metadata["data offset values"] = [repr(v) for v in meta.band_offsets]
    georef = scene.meta.georef
    if georef is not None:
        metadata["map info"] = map_info(georef, meta.attrs.get(PROJECTION_KEY))
        if georef.crs:
            metadata["coordinate system string"] = [georef.crs]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.stem}."))
    try:
        staged_header = staging / header.name
        envi.save_image(
            str(staged_header),
            np.transpose(data, (1, 2, 0)),
            dtype=data.dtype,
            interleave="bsq",
            ext=".img",
            metadata=metadata,
            force=True,
        )
        os.replace(staging / image.name, image)  # data first: a header never points at a missing file
        os.replace(staged_header, header)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
