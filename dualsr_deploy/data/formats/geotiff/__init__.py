"""TIFF, GeoTIFF and Cloud-Optimized GeoTIFF: plain TIFFs read through tifffile, GeoTIFFs (and TIFFs carrying GDAL's
tags) through rasterio (:mod:`.read`); every TIFF written through GDAL by windows (:mod:`.write`), georeferenced or
not, a ``.cog.tif`` copied by GDAL's COG driver."""

from __future__ import annotations

from dualsr_deploy.data.formats.geotiff.read import GeoTiffReader, TiffReader, is_geotiff
from dualsr_deploy.data.formats.geotiff.write import COG_SUFFIX, GeoTiffStrips
from dualsr_deploy.data.formats.row import Format, Probe

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
TIFF_SUFFIXES = (".tif", ".tiff")


def _sniff_geotiff(probe: Probe) -> bool:
    return probe.head[:4] in TIFF_MAGICS and is_geotiff(probe.path)


GEOTIFF = Format(
    "geotiff",
    "GeoTIFF (rasterio; also TIFFs with GDAL's metadata)",
    sniff=_sniff_geotiff,
    reader=GeoTiffReader,
    scene_suffixes=TIFF_SUFFIXES,
    output=".tif",
    option="tif",
    writes=TIFF_SUFFIXES,
    strips=GeoTiffStrips,
)
COG = Format(
    "cog", "Cloud-Optimized GeoTIFF (GDAL's COG driver)", option="cog", writes=(COG_SUFFIX,), strips=GeoTiffStrips
)
TIFF = Format(
    "tiff",
    "TIFF (tifffile: a page per band, or samples)",
    sniff=lambda probe: probe.head[:4] in TIFF_MAGICS,
    reader=TiffReader,
    output=".tif",
)

__all__ = ["COG", "COG_SUFFIX", "GEOTIFF", "TIFF", "TIFF_SUFFIXES"]
