"""Writing GeoTIFFs and Cloud-Optimized GeoTIFFs through rasterio (GDAL), with the source's tags kept.

From a GeoTIFF source, the dataset tags (acquisition time, sensor, …) and each band's tags (``wavelength_units``, …)
and description come back as the source gave them; then ours: ``wavelength``/``fwhm``/``bbl`` per band as EnMAP and
GDAL's ENVI driver write them, the band centres and widths in GDAL's ``IMAGERY`` domain (``CENTRAL_WAVELENGTH_UM``,
``FWHM_UM``, as GDAL 3.10+ reads them), nodata, band scales/offsets when written in the source's units, and the
package's provenance as the dataset tag ``DUALSR_SCENE``.

``cog``: GDAL's COG driver makes the file from the GeoTIFF (tiled 512², overviews, DEFLATE with a predictor), so
GDAL reports ``LAYOUT=COG`` for it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.atomic import TEMP_SUFFIX, atomic_output, temp_prefix
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.data.validity import representable

OURS = {"DUALSR_SCENE", "wavelengths"}
MICROMETRES_BELOW = 100.0  # band centres under this are in micrometres (no sensor has bands under 100 nm)


def write_geotiff(
    target: Path, data: np.ndarray, meta_json: str, scene: Scene, units: str, factor: float | None, *, cog: bool
) -> None:
    """``data (C, H, W)`` as a GeoTIFF (``cog``: a Cloud-Optimized GeoTIFF) at ``target``."""
    from dualsr_deploy.data.readers.tiff import import_rasterio

    rasterio = import_rasterio()
    if not cog:
        with atomic_output(target) as tmp:
            _write(rasterio, tmp, data, meta_json, scene, units, factor, tiled=min(data.shape[1:]) >= 256)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, plain_name = tempfile.mkstemp(
        dir=target.parent, prefix=temp_prefix(target.name), suffix=".plain" + TEMP_SUFFIX
    )
    os.close(handle)
    plain = Path(plain_name)
    try:
        _write(rasterio, plain, data, meta_json, scene, units, factor, tiled=True)
        to_cog(plain, target, data.dtype)
    finally:
        plain.unlink(missing_ok=True)


def _source_tags(meta: SceneMeta) -> tuple[dict[str, str], list[dict[str, str]], list[str | None]]:
    """The source GeoTIFF's dataset tags, per-band tags and band descriptions (empty when it is no GeoTIFF)."""
    source = Path(meta.source)
    if meta.format not in ("tiff", "geotiff") or not source.is_file():
        return {}, [], []
    from dualsr_deploy.data.readers.tiff import import_rasterio

    rasterio = import_rasterio()
    try:
        with rasterio.open(source) as dataset:
            tags = {k: v for k, v in dataset.tags().items() if k not in OURS}
            bands = [dataset.tags(band) for band in range(1, dataset.count + 1)]
            return tags, bands, list(dataset.descriptions)
    except rasterio.errors.RasterioError:
        return {}, [], []


def _same_number(text: str | None, value: float) -> bool:
    try:
        return text is not None and float(text) == value
    except ValueError:
        return False


def micrometres(wavelengths: tuple[float, ...], units: str | None) -> list[float]:
    """Band centres in µm, from values in ``units`` (``Nanometers``/``Micrometers`` as GDAL and ENVI name them), or
    by their size where no unit is given."""
    text = (units or "").lower()
    if text.startswith(("micro", "um", "µm")):
        return list(wavelengths)
    if text.startswith(("nano", "nm")) or max(wavelengths) >= MICROMETRES_BELOW:
        return [w / 1000.0 for w in wavelengths]
    return list(wavelengths)


def _write(
    rasterio: Any,
    path: Path,
    data: np.ndarray,
    meta_json: str,
    scene: Scene,
    units: str,
    factor: float | None,
    *,
    tiled: bool,
) -> None:
    shape = (data.shape[0], data.shape[1], data.shape[2])
    with open_geotiff(rasterio, path, shape, data.dtype, meta_json, scene.meta, units, factor, tiled=tiled) as dataset:
        dataset.write(data)


def open_geotiff(
    rasterio: Any,
    path: Path,
    shape: tuple[int, int, int],
    dtype: np.dtype,
    meta_json: str,
    meta: SceneMeta,
    units: str,
    factor: float | None,
    *,
    tiled: bool,
    rows_per_strip: int | None = None,
) -> Any:
    """A GeoTIFF opened for writing at ``path`` with every tag, description, scale and offset set; the caller writes
    the pixels (whole, or by windows) and closes it. ``tiled``: 256² tiles; else strips of ``rows_per_strip`` rows
    (GDAL's default without it)."""
    from affine import Affine

    c, h, w = shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "count": c,
        "height": h,
        "width": w,
        "dtype": str(np.dtype(dtype)),
        "compress": "deflate",
        "tiled": tiled,
        "interleave": "band",
    }
    if tiled:
        profile |= {"blockxsize": 256, "blockysize": 256}
    elif rows_per_strip is not None:
        profile["blockysize"] = rows_per_strip
    if meta.georef is not None:
        profile |= {"transform": Affine(*meta.georef.transform), "crs": meta.georef.crs}
    if meta.nodata is not None and representable(meta.nodata, np.dtype(dtype)):
        profile["nodata"] = meta.nodata
    if h * w * c * np.dtype(dtype).itemsize >= 2**32 - 2**28:  # past classic TIFF's 4 GiB
        profile["BIGTIFF"] = "IF_SAFER"
    source_tags, source_bands, descriptions = _source_tags(meta)
    tags = {**source_tags, "DUALSR_SCENE": meta_json}
    if meta.wavelengths is not None:
        tags["wavelengths"] = ",".join(repr(v) for v in meta.wavelengths)
    with warnings.catch_warnings():  # a TIFF without a grid (a lab cube): GDAL's metadata without georeferencing
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        dataset = rasterio.open(path, "w", **profile)
    dataset.update_tags(**tags)
    for band in range(c):
        given = source_bands[band] if len(source_bands) == c else {}
        ours = {"bbl": 0.0 if band in meta.bad_bands else 1.0}
        if meta.wavelengths is not None:
            ours["wavelength"] = meta.wavelengths[band]
        if meta.fwhm is not None:
            ours["fwhm"] = meta.fwhm[band]
        band_tags = dict(given)
        for key, value in ours.items():  # the source's own text where it says the same
            if not _same_number(given.get(key), value):
                band_tags[key] = str(int(value)) if key == "bbl" else repr(value)
        dataset.update_tags(band + 1, **band_tags)
        if meta.wavelengths is not None:
            unit = given.get("wavelength_units")
            imagery = {"CENTRAL_WAVELENGTH_UM": repr(micrometres((meta.wavelengths[band],), unit)[0])}
            if meta.fwhm is not None:
                reference = max(meta.wavelengths)  # the unit of the widths is that of the centres
                imagery["FWHM_UM"] = repr(micrometres((meta.fwhm[band], reference), unit)[0])
            dataset.update_tags(band + 1, ns="IMAGERY", **imagery)
        name = meta.band_names[band] if meta.band_names is not None else None
        name = name or (descriptions[band] if len(descriptions) == c else None)
        if name:
            dataset.set_band_description(band + 1, name)
    if units == "source" and (meta.band_gains is not None or meta.band_offsets is not None):
        dataset.scales = list(meta.band_gains or (1.0,) * c)
        dataset.offsets = list(meta.band_offsets or (0.0,) * c)
    elif factor is not None:
        dataset.scales = [1.0 / factor] * c
        dataset.offsets = [0.0] * c
    return dataset


def to_cog(plain: Path, target: Path, dtype: np.dtype) -> None:
    """``plain`` (a tiled GeoTIFF) copied to ``target`` by GDAL's COG driver (overviews, DEFLATE with a predictor)."""
    from rasterio.shutil import copy as rio_copy

    predictor = "YES" if np.dtype(dtype).kind in "fiu" else "NO"
    with atomic_output(target) as tmp:
        rio_copy(
            plain, tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR=predictor, OVERVIEWS="AUTO", BIGTIFF="IF_SAFER"
        )


__all__ = ["micrometres", "open_geotiff", "to_cog", "write_geotiff"]
