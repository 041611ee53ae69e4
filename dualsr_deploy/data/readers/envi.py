"""ENVI files (``.hdr`` + raw data, BSQ/BIL/BIP) through Spectral Python, wavelengths and map info kept."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.data.readers.base import SceneReader, reading, restore_written_meta
from dualsr_deploy.data.scene import GeoReference, Window
from dualsr_deploy.errors import DataError
from dualsr_deploy.optional import require

_INTERLEAVE_LAYOUT = {"bsq": "chw", "bil": "hcw", "bip": "hwc"}
META_KEY = "dualsr scene base64"  # provenance inside headers written before sidecars (still read)
SIDECAR_SUFFIX = ".dualsr.json"


def sidecar_of(header: Path) -> Path:
    """``scene.hdr`` → ``scene.dualsr.json``: the package's provenance beside an ENVI file it wrote."""
    return header.with_name(header.stem + SIDECAR_SUFFIX)


def header_entries(header: Path) -> list[tuple[str, str]]:
    """An ENVI header as ``(key, value)`` pairs in file order, each value exactly as written (``{…}`` values with
    their braces and line breaks), so that a writer can give them back byte for byte. An unbalanced ``{`` or a line
    that is neither ``key = value`` nor a comment is a :class:`DataError` naming the file and the key."""
    with reading(header):
        text = header.read_bytes().decode("latin-1")
    lines = text.splitlines()
    if not lines or not lines[0].strip().startswith("ENVI"):
        raise DataError(f"{header}: not an ENVI header (it does not start with 'ENVI')")
    entries: list[tuple[str, str]] = []
    index = 1
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        if "=" not in line:
            raise DataError(f"{header}: line {index} is not 'key = value': {line[:80]!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if value.startswith("{"):
            while value.count("{") > value.count("}"):
                if index >= len(lines):
                    raise DataError(f"{header}: the value of {key!r} opens '{{' and never closes it")
                value += "\n" + lines[index]
                index += 1
            if value.count("{") != value.count("}"):
                raise DataError(f"{header}: the value of {key!r} has unbalanced braces")
        entries.append((key, value))
    return entries


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
    """``map info``: projection, reference pixel (1-based), its map coordinates, pixel sizes, …, and an optional
    ``rotation=θ`` (degrees), read as GDAL reads it since 2.2.2: ``a = cos θ·px, b = −sin θ·py, d = −sin θ·px,
    e = −cos θ·py``."""
    try:
        ref_x, ref_y, easting, northing, size_x, size_y = (float(v) for v in values[1:7])
        rotations = [v.split("=", 1)[1] for v in values if v.strip().lower().startswith("rotation")]
        theta = math.radians(float(rotations[0])) if rotations else 0.0
    except (ValueError, IndexError):
        raise DataError(f"{source}: unreadable 'map info' {values}") from None
    a, b = math.cos(theta) * size_x, -math.sin(theta) * size_y
    d, e = -math.sin(theta) * size_x, -math.cos(theta) * size_y
    if not theta:
        b = d = 0.0
    c = easting - (ref_x - 1) * a - (ref_y - 1) * b
    f = northing - (ref_x - 1) * d - (ref_y - 1) * e
    return GeoReference((a, b, c, d, e, f))


def _wavelengths_from_names(names: tuple[str, ...]) -> tuple[float, ...] | None:
    """Wavelengths in nm from band names such as ``376.44 Nanometers`` or ``0.38 Micrometers``, if all carry one."""
    found = []
    for name in names:
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(nanometers|nm|micrometers|microns|um|µm)\s*", name.lower())
        if match is None:
            return None
        value = float(match.group(1))
        found.append(value if match.group(2) in ("nanometers", "nm") else value * 1000.0)
    return tuple(found)


PROJECTION_KEY = "envi map info projection"  # the input's projection name and fields (zone, datum, units)


def map_info(georef: GeoReference, projection: str | None = None) -> list[str]:
    """``map info`` for a transform (reference pixel 1, 1), with ``rotation=θ`` when the grid is rotated;
    ``projection``: the input's projection fields (``UTM|11|North|WGS-84``), kept as they were."""
    a, b, c, d, e, f = georef.transform
    size_x, size_y = math.hypot(a, d), math.hypot(b, e)
    fields = projection.split("|") if projection else ["Arbitrary"]
    info = [fields[0], "1", "1", repr(c), repr(f), repr(size_x), repr(size_y), *fields[1:]]
    if b != 0 or d != 0:
        info.append(f"rotation={math.degrees(math.atan2(-d, a))!r}")
    return info


class EnviReader(SceneReader):
    format = "envi"

    def __init__(self, path: Path) -> None:
        envi = import_envi()
        header = header_of(path)
        self.header_entries = header_entries(header)
        with reading(header):
            self._image = envi.open(str(header))
        meta = self._image.metadata
        interleave = str(meta.get("interleave", "bsq")).lower()
        super().__init__(header, header.stem, layout=_INTERLEAVE_LAYOUT.get(interleave, "chw"))
        if "wavelength" in meta:
            self.wavelengths = tuple(float(w) for w in meta["wavelength"])
        if "band names" in meta and len(meta["band names"]) == self.shape[0]:
            self.band_names = tuple(str(name).strip() for name in meta["band names"])
            if self.wavelengths is None:  # AVIRIS-NG: "376.44 Nanometers"
                self.wavelengths = _wavelengths_from_names(self.band_names)
        if "fwhm" in meta:
            self.fwhm = tuple(float(w) for w in meta["fwhm"])
        if "data ignore value" in meta:
            self.nodata = float(meta["data ignore value"])
        if "bbl" in meta:
            self.declared_bad = {i for i, flag in enumerate(meta["bbl"]) if float(flag) == 0}
        bands = self.shape[0]
        for key, target in (("data gain values", "band_gains"), ("data offset values", "band_offsets")):
            if key in meta and len(meta[key]) == bands:
                setattr(self, target, tuple(float(v) for v in meta[key]))
        if "reflectance scale factor" in meta and float(meta["reflectance scale factor"]) not in (0.0, 1.0):
            self.declared_scale = float(meta["reflectance scale factor"])
        if "map info" in meta:
            values = [str(v).strip() for v in meta["map info"]]
            self.georef = _map_info(values, header)
            extra = [v for v in values[7:] if not v.lower().startswith("rotation")]
            self.attrs[PROJECTION_KEY] = "|".join([values[0], *extra])
            crs = meta.get("coordinate system string")
            if crs and self.georef is not None:
                crs_text = crs if isinstance(crs, str) else ",".join(crs)
                self.georef = GeoReference(self.georef.transform, crs_text.strip("{}"))
        if sidecar_of(header).is_file():
            with reading(sidecar_of(header)):
                restore_written_meta(self, sidecar_of(header).read_text())
        elif META_KEY in meta:
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
