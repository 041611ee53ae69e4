"""Writing GeoTIFFs and Cloud-Optimized GeoTIFFs through rasterio (GDAL) by windows, with the source's tags kept.

From a GeoTIFF source, the dataset tags (acquisition time, sensor, …) and each band's tags (``wavelength_units``, …)
and description come back as the source gave them; then ours: ``wavelength``/``fwhm``/``bbl`` per band as EnMAP and
GDAL's ENVI driver write them, the band centres and widths in GDAL's ``IMAGERY`` domain (``CENTRAL_WAVELENGTH_UM``,
``FWHM_UM``, as GDAL 3.10+ reads them), nodata, band scales/offsets when written in the source's units, and the
package's provenance as the dataset tag ``DUALSR_SCENE``.

``cog``: GDAL's COG driver makes the file from the GeoTIFF (tiled 512², overviews, DEFLATE with a predictor), so
GDAL reports ``LAYOUT=COG`` for it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.data.formats.row import WriteOptions
from dualsr_deploy.data.formats.strips import StripWriter
from dualsr_deploy.data.remote_ranges import VSI_OPEN, is_vsi
from dualsr_deploy.data.scene import SceneMeta
from dualsr_deploy.data.validity import representable

COG_SUFFIX = ".cog.tif"  # a Cloud-Optimized GeoTIFF (GDAL's COG driver) rather than a plain GeoTIFF
GDAL_CACHE_MB = 64  # GDAL's block cache while a GeoTIFF is written by windows (its default is 5 % of the RAM)
TIFF_ROWS_PER_STRIP = 16  # a streamed GeoTIFF's strips
OURS = {"DUALSR_SCENE", "wavelengths"}
MICROMETRES_BELOW = 100.0  # band centres under this are in micrometres (no sensor has bands under 100 nm)


def _source_tags(meta: SceneMeta) -> tuple[dict[str, str], list[dict[str, str]], list[str | None]]:
    """The source GeoTIFF's dataset tags, per-band tags and band descriptions (empty when it is no GeoTIFF)."""
    source = Path(meta.source)
    remote = is_vsi(source)  # read by range, as it was
    if meta.format not in ("tiff", "geotiff") or not (remote or source.is_file()):
        return {}, [], []
    from dualsr_deploy.data.formats.geotiff.read import import_rasterio

    rasterio = import_rasterio()
    settings = VSI_OPEN if remote else {}
    try:
        with rasterio.Env(**settings), rasterio.open(source) as dataset:
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


class GeoTiffStrips(StripWriter):
    """GeoTIFF by GDAL windows, its block cache held to :data:`GDAL_CACHE_MB`: a whole scene tiled 256² (from
    256² up), a streamed one in strips of :data:`TIFF_ROWS_PER_STRIP` rows, so that a window of rows completes its
    blocks; a ``.cog.tif`` is then copied by GDAL's COG driver (tiled 512², overviews, DEFLATE with a predictor)."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, options: WriteOptions
    ) -> None:
        super().__init__(path, shape, dtype, meta, options)
        with self._removed_on_error():
            from dualsr_deploy.data.formats.geotiff.read import import_rasterio

            self.rasterio = import_rasterio()
            self.cog = path.name.lower().endswith(COG_SUFFIX)
            self.env = self.rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
            self.env.__enter__()
            self.plain = self.staging / ("plain.tif" if self.cog else path.name)
            tiled = options.whole and (self.cog or min(shape[1:]) >= 256)
            self.dataset: Any = open_geotiff(
                self.rasterio,
                self.plain,
                shape,
                self.dtype,
                meta.to_json(),
                meta,
                options.units,
                options.factor,
                tiled=tiled,
                rows_per_strip=None if tiled else TIFF_ROWS_PER_STRIP,
            )

    def write(self, first_row: int, rows: np.ndarray) -> None:
        from rasterio.windows import Window

        _c, _h, w = self.shape
        self.dataset.write(rows, window=Window(0, first_row, w, rows.shape[1]))

    def _provenance_changed(self) -> None:
        self.dataset.update_tags(DUALSR_SCENE=self.meta.to_json())

    def _finish(self) -> None:
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


__all__ = ["COG_SUFFIX", "GeoTiffStrips", "micrometres", "open_geotiff", "to_cog"]
