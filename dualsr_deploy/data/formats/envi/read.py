"""ENVI files (``.hdr`` + raw data, BSQ/BIL/BIP) through Spectral Python, wavelengths and map info kept."""

from __future__ import annotations

import base64
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.data.confine import Confinement
from dualsr_deploy.data.formats.reader import SceneReader, reading, restore_written_meta
from dualsr_deploy.data.metadata import flags, number, numbers, positive_factor
from dualsr_deploy.data.scene import GeoReference, Window
from dualsr_deploy.errors import DataError
from dualsr_deploy.optional import require

_INTERLEAVE_LAYOUT = {"bsq": "chw", "bil": "hcw", "bip": "hwc"}
DATA_SUFFIX_KEY = "envi data suffix"  # the source data file's suffix ("" for AVIRIS-NG's), written back the same
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


def data_file_of(header: Path, interleave: str) -> Path:
    """The data file of an ENVI header, found as Spectral Python finds it (the header's name without ``.hdr``, then
    with ``.img``, ``.dat``, … or the interleave as suffix, lower then upper case), so that it can be checked before
    anything opens it. The header's own ``data file`` key is never followed."""
    from spectral.io.envi import KNOWN_EXTS

    title = header.with_suffix("") if header.suffix.lower() == ".hdr" else header
    suffixes = [ext.lower() for ext in KNOWN_EXTS] + [interleave.lower()]
    for suffix in ["", *suffixes, *(ext.upper() for ext in suffixes)]:
        candidate = title.with_name(f"{title.name}.{suffix}") if suffix else title
        if os.path.lexists(candidate) and candidate != header:
            return candidate
    raise DataError(f"{header}: no ENVI data file beside it ({title.name}.img, .dat, … or {title.name})")


class EnviReader(SceneReader):
    format = "envi"

    def __init__(self, path: Path, *, confine: Confinement | None = None) -> None:
        envi = import_envi()
        header = header_of(path)
        confine = confine or Confinement.around(path)
        if header != path:
            confine.check(header, "ENVI header")
        self.header_entries = header_entries(header)
        with reading(header):
            stated = envi.read_envi_header(str(header.absolute()))
        interleave = str(stated.get("interleave", "bsq")).lower()
        data = confine.check(data_file_of(header, interleave), "ENVI data file")
        with reading(header):
            self._image = envi.open(str(header.absolute()), image=str(data.absolute()))
        # Spectral divides what it reads by 'reflectance scale factor'; the factor is applied once, by the
        # normalisation (declared_scale), so the reads here are the stored values.
        self._image.scale_factor = 1.0
        meta = self._image.metadata
        super().__init__(header, header.stem, layout=_INTERLEAVE_LAYOUT.get(interleave, "chw"), confine=confine)
        self.claim(data, "ENVI data file")
        self.attrs[DATA_SUFFIX_KEY] = data.name[len(header.name) - len(header.suffix) :]
        bands = self.shape[0]
        if "wavelength" in meta:
            self.wavelengths = numbers(meta["wavelength"], "wavelength", header, count=bands)
        if "band names" in meta and len(meta["band names"]) == bands:
            self.band_names = tuple(str(name).strip() for name in meta["band names"])
            if self.wavelengths is None:  # AVIRIS-NG: "376.44 Nanometers"
                self.wavelengths = _wavelengths_from_names(self.band_names)
        if "fwhm" in meta:
            self.fwhm = numbers(meta["fwhm"], "fwhm", header, count=bands)
        if "data ignore value" in meta:
            self.nodata = number(meta["data ignore value"], "data ignore value", header, finite=False)
        if "bbl" in meta:
            self.declared_bad = flags(meta["bbl"], "bbl", header, bands)
        for key, target in (("data gain values", "band_gains"), ("data offset values", "band_offsets")):
            if key in meta:
                setattr(self, target, numbers(meta[key], key, header, count=bands))
        if "reflectance scale factor" in meta:
            factor = positive_factor(meta["reflectance scale factor"], "reflectance scale factor", header)
            self.declared_scale = None if factor == 1.0 else factor
        if "map info" in meta:
            values = [str(v).strip() for v in meta["map info"]]
            self.georef = _map_info(values, header)
            extra = [v for v in values[7:] if not v.lower().startswith("rotation")]
            self.attrs[PROJECTION_KEY] = "|".join([values[0], *extra])
            crs = meta.get("coordinate system string")
            if crs and self.georef is not None:
                crs_text = crs if isinstance(crs, str) else ",".join(crs)
                self.georef = GeoReference(self.georef.transform, crs_text.strip("{}"))
        sidecar = self.claim_if_present(sidecar_of(header), "dualsr sidecar")
        if sidecar is not None:
            with reading(sidecar):
                text = sidecar.read_text()
            restore_written_meta(self, text)
        elif META_KEY in meta:
            try:
                decoded = base64.b64decode(str(meta[META_KEY]), validate=True).decode()
            except ValueError:
                self.notes.append("ignored unreadable dualsr metadata")
            else:
                restore_written_meta(self, decoded)

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
