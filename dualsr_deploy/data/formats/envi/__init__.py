"""ENVI (``.hdr`` + raw data, BSQ/BIL/BIP): read through Spectral Python (:mod:`.read`), written by strips at the
data file's offsets with the source's header entries kept (:mod:`.write`)."""

from __future__ import annotations

from pathlib import Path

from dualsr_deploy.data.confine import Confinement
from dualsr_deploy.data.formats.envi.read import EnviReader, sidecar_of
from dualsr_deploy.data.formats.envi.write import EnviStrips
from dualsr_deploy.data.formats.reader import SceneReader
from dualsr_deploy.data.formats.row import Format, Probe

HEADER_SUFFIX = ".hdr"


def _sniff(probe: Probe) -> bool:
    """A header (``ENVI`` first, or ``.hdr``), or a data file with a header beside it."""
    return (
        probe.head.startswith(b"ENVI")
        or probe.suffix == HEADER_SUFFIX
        or probe.path.with_suffix(HEADER_SUFFIX).is_file()
    )


def _open(path: Path, confine: Confinement, key: str | None, layout: str | None) -> SceneReader:
    return EnviReader(path, confine=confine)


def output_files(output: Path) -> list[Path]:
    """Every file an ENVI output may be: its header, its data file (named as its source's: no suffix, or ``.img``
    …) and the provenance sidecar."""
    bare = output.with_name(output.name[: -len(output.suffix)])
    return [output, output.with_suffix(".img"), bare, sidecar_of(output)]


def content_files(output: Path) -> list[Path]:
    """The header and the data file an ENVI output has (as ENVI readers find it: no suffix, else ``.img``)."""
    bare = output.with_name(output.name[: -len(output.suffix)])
    return [output, bare if bare.is_file() else output.with_suffix(".img")]


ENVI = Format(
    "envi",
    "ENVI (.hdr + BSQ/BIL/BIP data; interleave and byte order kept)",
    sniff=_sniff,
    open=_open,
    scene_suffixes=(HEADER_SUFFIX,),
    output=HEADER_SUFFIX,
    option="envi",
    writes=(HEADER_SUFFIX,),
    strips=EnviStrips,
    files=output_files,
    content=content_files,
    uncompressed=True,
)

__all__ = ["ENVI", "HEADER_SUFFIX", "output_files"]
