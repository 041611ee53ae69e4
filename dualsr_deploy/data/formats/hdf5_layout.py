"""How this package lays out the HDF5 files it writes, shared by the HDF5, MATLAB v7.3 and NetCDF strip writers:
compression, and MATLAB v7.3's conventions (class attributes, the provenance as a MATLAB
char array, the 128-byte header in the 512-byte user block)."""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np

# Compressed cubes (HDF5, MATLAB v7.3, NetCDF): gzip level 1 with byte shuffling, which every HDF5 and netCDF client
# reads without a plugin; see benchmarks/results/compression.md for the levels measured
HDF5_COMPRESSION: dict[str, object] = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
MATLAB_CLASS = {"float64": "double", "float32": "single", "uint8": "uint8", "uint16": "uint16", "int16": "int16"}


def mat_header() -> bytes:
    """The 128-byte MATLAB 7.3 header at the start of the file's 512-byte user block."""
    created = datetime.datetime.now(datetime.UTC).strftime("%a %b %d %H:%M:%S %Y")
    header = f"MATLAB 7.3 MAT-file, Platform: dualsr-deploy, Created on: {created} HDF5 schema 1.00 ."
    return header.encode().ljust(116) + bytes(8) + b"\x00\x02IM"


def matlab_provenance(handle: Any, meta_json: str) -> None:
    """The package's provenance as the MATLAB char array ``dualsr_scene`` of an open v7.3 file (UTF-16 code units)."""
    chars = np.frombuffer(meta_json.encode("utf-16-le"), dtype=np.uint16).reshape(-1, 1)
    text = handle.create_dataset("dualsr_scene", data=chars)
    text.attrs["MATLAB_class"] = np.bytes_("char")
    text.attrs["MATLAB_int_decode"] = np.int32(2)


__all__ = ["HDF5_COMPRESSION", "MATLAB_CLASS", "mat_header", "matlab_provenance"]
