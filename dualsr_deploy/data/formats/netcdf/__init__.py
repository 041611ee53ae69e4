"""NetCDF-4 sensor products, recognised by their structure: EMIT L1B/L2A granules (:mod:`.emit`) and AVIRIS-3
orthorectified reflectance (:mod:`.aviris3`), read through h5py; written back in their own structure by strips
(:mod:`.write`)."""

from __future__ import annotations

from dualsr_deploy.data.formats.netcdf.aviris3 import Aviris3Reader, is_aviris3
from dualsr_deploy.data.formats.netcdf.emit import EmitReader, is_emit
from dualsr_deploy.data.formats.netcdf.write import NETCDF_NEEDS, NETCDF_SOURCES, NetcdfStrips
from dualsr_deploy.data.formats.row import Format, Probe

NETCDF_SUFFIX = ".nc"


def _sniff_emit(probe: Probe) -> bool:
    return probe.hdf5 is not None and is_emit(probe.hdf5)


def _sniff_aviris3(probe: Probe) -> bool:
    return probe.hdf5 is not None and is_aviris3(probe.hdf5)


EMIT = Format(
    "emit",
    "EMIT L1B/L2A granule (NetCDF-4; written back in its structure)",
    sniff=_sniff_emit,
    reader=EmitReader,
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
    reader=Aviris3Reader,
    output=NETCDF_SUFFIX,
)

__all__ = ["AVIRIS3", "EMIT", "NETCDF_NEEDS", "NETCDF_SOURCES", "NETCDF_SUFFIX"]
