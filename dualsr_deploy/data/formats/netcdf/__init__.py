"""NetCDF-4 sensor products, recognised by their structure: EMIT L1B/L2A granules (:mod:`.emit`) and AVIRIS-3
orthorectified reflectance (:mod:`.aviris3`), read through h5py; written back in their own structure by strips
(:mod:`.write`)."""

from __future__ import annotations

from pathlib import Path

from dualsr_deploy.data.confine import Confinement
from dualsr_deploy.data.formats.netcdf.aviris3 import Aviris3Reader, is_aviris3
from dualsr_deploy.data.formats.netcdf.emit import EmitReader, is_emit
from dualsr_deploy.data.formats.netcdf.write import NETCDF_NEEDS, NETCDF_SOURCES, NetcdfStrips
from dualsr_deploy.data.formats.reader import SceneReader
from dualsr_deploy.data.formats.row import Format, Probe

NETCDF_SUFFIX = ".nc"


def _open_emit(path: Path, confine: Confinement, key: str | None, layout: str | None) -> SceneReader:
    return EmitReader(path, confine=confine)


def _open_aviris3(path: Path, confine: Confinement, key: str | None, layout: str | None) -> SceneReader:
    return Aviris3Reader(path, confine=confine)


def _sniff_emit(probe: Probe) -> bool:
    return probe.hdf5 is not None and is_emit(probe.hdf5)


def _sniff_aviris3(probe: Probe) -> bool:
    return probe.hdf5 is not None and is_aviris3(probe.hdf5)


EMIT = Format(
    "emit",
    "EMIT L1B/L2A granule (NetCDF-4; written back in its structure)",
    sniff=_sniff_emit,
    open=_open_emit,
    scene_suffixes=(NETCDF_SUFFIX,),
    output=NETCDF_SUFFIX,
    option="nc",
    writes=(NETCDF_SUFFIX,),
    strips=NetcdfStrips,
    sources=NETCDF_SOURCES,
    needs=NETCDF_NEEDS,
)
AVIRIS3 = Format(
    "aviris3",
    "AVIRIS-3 L2A orthorectified reflectance (NetCDF-4)",
    sniff=_sniff_aviris3,
    open=_open_aviris3,
    output=NETCDF_SUFFIX,
)

__all__ = ["AVIRIS3", "EMIT", "NETCDF_NEEDS", "NETCDF_SOURCES", "NETCDF_SUFFIX"]
