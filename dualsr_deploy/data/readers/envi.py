"""ENVI files (``.hdr`` + raw data, BSQ/BIL/BIP) through Spectral Python, wavelengths and map info kept."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.data.readers.base import SceneReader, reading, restore_written_meta
from dualsr_deploy.data.scene import GeoReference, Window
from dualsr_deploy.errors import DataError
from dualsr_deploy.optional import require

_INTERLEAVE_LAYOUT = {"bsq": "chw", "bil": "hcw", "bip": "hwc"}
META_KEY = "dualsr scene base64"


def import_envi() -> Any:
    return require("spectral.io.envi", feature="ENVI", extra="formats")


def header_of(path: Path) -> Path:
    """The ``.hdr`` of an ENVI file given either the header or the data file."""
    if path.suffix.lower() == ".hdr":
        return path
    for candidate in (path.with_suffix(".hdr"), path.with_name(path.name + ".hdr")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{path}: no ENVI header ({path.with_suffix('.hdr').name}) beside it")


def _map_info(values: list[str], source: Path) -> GeoReference | None:
    try:
        ref_x, ref_y, easting, northing, size_x, size_y = (float(v) for v in values[1:7])
    except (ValueError, IndexError):
        raise DataError(f"{source}: unreadable 'map info' {values}") from None
    transform = (size_x, 0.0, easting - (ref_x - 1) * size_x, 0.0, -size_y, northing + (ref_y - 1) * size_y)
    return GeoReference(transform)


class EnviReader(SceneReader):
    format = "envi"

    def __init__(self, path: Path) -> None:
        envi = import_envi()
        header = header_of(path)
        with reading(header):
            self._image = envi.open(str(header))
        meta = self._image.metadata
        interleave = str(meta.get("interleave", "bsq")).lower()
        super().__init__(header, header.stem, layout=_INTERLEAVE_LAYOUT.get(interleave, "chw"))
        if "wavelength" in meta:
            self.wavelengths = tuple(float(w) for w in meta["wavelength"])
        if "fwhm" in meta:
            self.fwhm = tuple(float(w) for w in meta["fwhm"])
        if "data ignore value" in meta:
            self.nodata = float(meta["data ignore value"])
        if "bbl" in meta:
            self.declared_bad = {i for i, flag in enumerate(meta["bbl"]) if float(flag) == 0}
        if "reflectance scale factor" in meta and float(meta["reflectance scale factor"]) not in (0.0, 1.0):
            self.declared_scale = float(meta["reflectance scale factor"])
        if "map info" in meta:
            self.georef = _map_info(list(meta["map info"]), header)
            crs = meta.get("coordinate system string")
            if crs and self.georef is not None:
                crs_text = crs if isinstance(crs, str) else ",".join(crs)
                self.georef = GeoReference(self.georef.transform, crs_text.strip("{}"))
        if META_KEY in meta:
            restore_written_meta(self, base64.b64decode(meta[META_KEY]).decode())

    @property
    def shape(self) -> tuple[int, int, int]:
        rows, cols, bands = self._image.shape
        return int(bands), int(rows), int(cols)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._image.dtype)

    def _read(self, window: Window | None) -> np.ndarray:
        _, height, width = self.shape
        rows = (0, height) if window is None else (window.top, window.top + window.height)
        cols = (0, width) if window is None else (window.left, window.left + window.width)
        data = self._image.read_subregion(rows, cols)
        return np.ascontiguousarray(np.transpose(data, (2, 0, 1)))
