"""ENVI (``.hdr`` + raw data, BSQ/BIL/BIP): read through Spectral Python (:mod:`.read`), written by strips at the
data file's offsets with the source's header entries kept (:mod:`.write`)."""

from __future__ import annotations

import re
from pathlib import Path

from dualsr_deploy.data.formats.envi.read import EnviReader, sidecar_of
from dualsr_deploy.data.formats.envi.write import EnviStrips
from dualsr_deploy.data.formats.geotiff import TIFF_SUFFIXES
from dualsr_deploy.data.formats.row import Format, Probe

HEADER_SUFFIX = ".hdr"
# Sensor products' auxiliary files (AVIRIS-NG geometry, location, GLT; masks and quality layers): not spectral scenes
AUXILIARY = re.compile(
    r"(_loc|_obs|_obs_ort|_glt|_igm|_lbl|_mask|_bandmask|_quality|_qa)(_|\.|$)|(^|_)mask(_|\.|$)", re.I
)


def _sniff(probe: Probe) -> bool:
    """A header (``ENVI`` first, or ``.hdr``), or a data file with a header beside it."""
    return (
        probe.head.startswith(b"ENVI")
        or probe.suffix == HEADER_SUFFIX
        or probe.path.with_suffix(HEADER_SUFFIX).is_file()
    )


def output_files(output: Path) -> list[Path]:
    """Every file an ENVI output may be: its header, its data file (named as its source's: no suffix, or ``.img``
    …) and the provenance sidecar."""
    bare = output.with_name(output.name[: -len(output.suffix)])
    return [output, output.with_suffix(".img"), bare, sidecar_of(output)]


def content_files(output: Path) -> list[Path]:
    """The header and the data file an ENVI output has (as ENVI readers find it: no suffix, else ``.img``)."""
    bare = output.with_name(output.name[: -len(output.suffix)])
    return [output, bare if bare.is_file() else output.with_suffix(".img")]


def companion(path: Path, scene_suffixes: frozenset[str]) -> str | None:
    """A header of a GeoTIFF (GDAL reads it with the image), of an auxiliary product, or a data file whose header
    sits beside it: read with their scene, never as one."""
    if path.suffix.lower() == HEADER_SUFFIX:
        images = [path.with_suffix(suffix) for suffix in (*TIFF_SUFFIXES, ".TIF")]
        images += [path.with_suffix("")] if path.with_suffix("").suffix.lower() in TIFF_SUFFIXES else []
        tiffs = [image for image in images if image.is_file()]
        if tiffs:
            return f"ENVI header of the GeoTIFF {tiffs[0].name} (read with it)"
        if AUXILIARY.search(path.stem):
            return "auxiliary product (geometry, location or mask), not a spectral scene"
        return None
    if path.suffix.lower() in scene_suffixes:
        return None
    headers = [path.with_suffix(HEADER_SUFFIX)] if path.suffix else []
    headers.append(path.with_name(path.name + HEADER_SUFFIX))
    header = next((candidate for candidate in headers if candidate.is_file()), None)
    if header is None:
        return None
    if AUXILIARY.search(path.stem):
        return "auxiliary product (geometry, location or mask), not a spectral scene"
    return f"data of the ENVI scene {headers[0].name} (read with it)"


ENVI = Format(
    "envi",
    "ENVI (.hdr + BSQ/BIL/BIP data; interleave and byte order kept)",
    sniff=_sniff,
    reader=EnviReader,
    scene_suffixes=(HEADER_SUFFIX,),
    output=HEADER_SUFFIX,
    option="envi",
    writes=(HEADER_SUFFIX,),
    strips=EnviStrips,
    files=output_files,
    content=content_files,
    companion=companion,
    uncompressed=True,
)

__all__ = ["AUXILIARY", "ENVI", "HEADER_SUFFIX", "companion", "content_files", "output_files"]
