"""Writing ENVI files (``.hdr`` + ``.img``) that GDAL, ENVI and Spectral Python read alike.

From an ENVI source every header entry comes back as the source wrote it, byte for byte (``{…}`` values with their
braces, commas and line breaks: ``wavelength``, ``fwhm``, ``band names``, ``bbl``, ``coordinate system string``,
sensor keys), in the same order, except what the super-resolution changes: ``samples``/``lines`` (× s),
``header offset`` (0), ``data type`` (the written dtype), ``map info`` (pixel size ÷ s), ``data ignore value`` (kept
where the written dtype holds it) and the units keys when the values are written normalised. The ``description``
is kept with a provenance line appended. Interleave and byte order are the source's. From any other source the
header is built from the scene's metadata with ``{…}`` lists wrapped at 80 columns. No header line is longer than
the source header's longest or 80 columns, whichever is more; the package's full provenance goes to the sidecar
``<name>.dualsr.json`` (GDAL's ENVI driver refuses header lines past ~10,000 characters).
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualsr_deploy.data.formats.envi.read import (
    DATA_SUFFIX_KEY,
    META_KEY,
    PROJECTION_KEY,
    header_entries,
    map_info,
    sidecar_of,
)
from dualsr_deploy.data.formats.row import WriteOptions
from dualsr_deploy.data.formats.strips import StripWriter
from dualsr_deploy.data.rawfile import RawFile
from dualsr_deploy.data.scene import SceneMeta
from dualsr_deploy.data.validity import representable
from dualsr_deploy.errors import DataError

ENVI_DATA_TYPES = {"uint8": 1, "int16": 2, "int32": 3, "float32": 4, "float64": 5, "uint16": 12, "uint32": 13}
ENVI_DATA_TYPES |= {"int64": 14, "uint64": 15}
INTERLEAVE_AXES = {"bsq": (0, 1, 2), "bil": (1, 0, 2), "bip": (1, 2, 0)}  # from (bands, lines, samples)
UNIT_KEYS = ("data gain values", "data offset values", "reflectance scale factor")
WRAP = 80
ROWS_AT_ONCE = 64  # lines reordered into the file's interleave at a time


@dataclass(frozen=True)
class EnviLayout:
    """What an ENVI file of a scene will be: its header text and how its data file is laid out."""

    header: str
    interleave: str  # bsq | bil | bip
    byte_order: int  # 0 little-endian, 1 big-endian
    data_name: str  # the data file's name: the header's without .hdr, then the source's data suffix (or .img)

    def stored(self, dtype: np.dtype) -> np.dtype:
        return dtype.newbyteorder(">" if self.byte_order == 1 else "<")


def envi_layout(
    target: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, units: str, factor: float | None
) -> EnviLayout:
    """The header of ``target.hdr`` for a ``(C, H, W)`` cube of ``dtype`` with ``meta``, in the source's interleave
    and byte order (BSQ, little-endian from any other source)."""
    header = target.with_suffix(".hdr")
    source = _source_entries(meta)
    interleave = _value(source, "interleave", "bsq").lower()
    if interleave not in INTERLEAVE_AXES:
        interleave = "bsq"
    byte_order = 1 if _value(source, "byte order", "0").strip() == "1" else 0
    dtype_name = np.dtype(dtype).newbyteorder("=").name
    if dtype_name not in ENVI_DATA_TYPES:
        raise DataError(f"{target}: ENVI cannot hold {dtype_name}")
    entries = _entries(source, shape, np.dtype(dtype), meta, units, factor, interleave, byte_order)
    # a WKT and a map info stay on one line, as every producer writes them; lists are wrapped at WRAP columns
    unwrappable = [f"{k} = {v}" for k, v in entries if k.lower() in ("coordinate system string", "map info")]
    longest = max(
        [WRAP, *(len(line) for key, value in [*source, ("", "")] for line in f"{key} = {value}".splitlines())]
    )
    longest = max([longest, *(len(line) for line in unwrappable)])
    text = _render(entries)
    too_long = [line for line in text.splitlines() if len(line) > longest]
    if too_long:  # a value we built ourselves; never expected, but never written past GDAL's limit silently
        raise DataError(
            f"{header}: a header line of {len(too_long[0])} characters ({too_long[0][:40]}…); the limit is {longest}"
        )
    return EnviLayout(text, interleave, byte_order, data_path(header, meta).name)


def data_path(header: Path, meta: SceneMeta) -> Path:
    """The data file written beside ``header``: named like the source's data file (AVIRIS-NG's and EMIT's have no
    suffix, others ``.img``, ``.dat`` …), ``.img`` for sources that are not ENVI."""
    suffix = meta.attrs.get(DATA_SUFFIX_KEY, ".img")
    if not re.fullmatch(r"(\.[A-Za-z0-9_]{1,12})?", suffix):  # an attribute is a claim: only a plain suffix
        suffix = ".img"
    return header.with_name(header.name[: -len(header.suffix)] + suffix)


def publish_envi(target: Path, staging: Path, layout: EnviLayout, meta_json: str) -> None:
    """Move the data file written in ``staging`` beside ``target``, with its provenance and header: data and
    provenance first, so that a header never points at a missing file."""
    header = target.with_suffix(".hdr")
    image = header.with_name(layout.data_name)
    (staging / sidecar_of(header).name).write_text(meta_json)
    (staging / header.name).write_text(layout.header, encoding="latin-1", errors="replace")
    os.replace(staging / image.name, image)
    os.replace(staging / sidecar_of(header).name, sidecar_of(header))
    os.replace(staging / header.name, header)


def _source_entries(meta: SceneMeta) -> list[tuple[str, str]]:
    source = Path(meta.source)
    if meta.format != "envi" or not source.is_file():
        return []
    return [(key, value) for key, value in header_entries(source) if key.lower() != META_KEY]


def _value(entries: list[tuple[str, str]], key: str, default: str) -> str:
    for name, value in entries:
        if name.lower() == key:
            return value
    return default


def envi_text(value: object, *, in_list: bool = False) -> str:
    """``value`` as text that stays one ENVI header value: braces become parentheses and line breaks spaces (an
    ENVI header has no escapes: a ``}`` or a new line in a band name or a CRS from another format would end the
    value and start keys of its own, such as ``byte order``), and in a list item commas become semicolons."""
    text = str(value).replace("{", "(").replace("}", ")")
    text = " ".join(text.splitlines()).replace("\x00", " ")
    return text.replace(",", ";") if in_list else text


def _braces(items: list[str]) -> str:
    """``{`` then the items, comma-separated, on lines of at most :data:`WRAP` columns, then ``}`` (as ENVI and
    the AVIRIS processors write long lists)."""
    lines, line = [], ""
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "}")
        if line and len(line) + len(piece) + 1 > WRAP:
            lines.append(line)
            line = ""
        line += " " + piece
    return "{\n" + "\n".join([*lines, line])


def _description(source: list[tuple[str, str]], meta: SceneMeta) -> str:
    """The input's description with a note of what was done, wrapped at :data:`WRAP` columns whatever the weights
    file or stage is called (a header line past GDAL's limit would be refused)."""
    attrs = meta.attrs
    text = "written by dualsr-deploy; provenance in the .dualsr.json beside this header"
    if "scale" in attrs:
        version = envi_text(attrs.get("dualsr_version", ""))
        stage, weights = envi_text(attrs.get("stage", "?")), envi_text(attrs.get("weights", "?"))
        made = f"{stage} stage, {weights} weights" if "bicubic" not in stage else stage
        text = (
            f"super-resolved x{envi_text(attrs['scale'])} by dualsr-deploy {version} ({made}); provenance in the "
            ".dualsr.json beside this header"
        )
    note = "\n".join(textwrap.wrap(text, WRAP - 2, initial_indent="  ", subsequent_indent="  ", break_long_words=True))
    original = _value(source, "description", "")
    if original.startswith("{") and original.endswith("}"):
        return original[:-1].rstrip() + "\n" + note + "}"
    return "{\n" + note + "}"


def _entries(
    source: list[tuple[str, str]],
    shape: tuple[int, int, int],
    dtype: np.dtype,
    meta: SceneMeta,
    units: str,
    factor: float | None,
    interleave: str,
    byte_order: int,
) -> list[tuple[str, str]]:
    bands, lines, samples = shape
    mine: dict[str, str] = {
        "description": _description(source, meta),
        "samples": str(samples),
        "lines": str(lines),
        "bands": str(bands),
        "header offset": "0",
        "file type": _value(source, "file type", "ENVI Standard"),
        "data type": str(ENVI_DATA_TYPES[dtype.newbyteorder("=").name]),
        "interleave": interleave,
        "byte order": str(byte_order),
    }
    if meta.georef is not None:
        projection = meta.attrs.get(PROJECTION_KEY)
        fields = map_info(meta.georef, None if projection is None else envi_text(projection, in_list=True))
        mine["map info"] = "{" + ", ".join(fields) + "}"
        if meta.georef.crs and not any(key.lower() == "coordinate system string" for key, _ in source):
            mine["coordinate system string"] = "{" + envi_text(meta.georef.crs) + "}"
    dropped = {"map info"} if meta.georef is None else set()
    if meta.nodata is not None and representable(meta.nodata, dtype):
        mine["data ignore value"] = _number(meta.nodata, dtype)
    else:
        dropped.add("data ignore value")
    if units != "source":
        dropped |= set(UNIT_KEYS)
    elif factor is not None:
        mine["reflectance scale factor"] = repr(factor)
    if not source:  # not from ENVI: the band metadata from the scene's
        if meta.wavelengths is not None:
            mine["wavelength units"] = "Nanometers"
            mine["wavelength"] = _braces([repr(v) for v in meta.wavelengths])
        if meta.fwhm is not None:
            mine["fwhm"] = _braces([repr(v) for v in meta.fwhm])
        if meta.band_names is not None:
            mine["band names"] = _braces([envi_text(name, in_list=True) for name in meta.band_names])
        if meta.bad_bands:
            mine["bbl"] = _braces(["0" if band in meta.bad_bands else "1" for band in range(bands)])
        if units == "source" and meta.band_gains is not None:
            mine["data gain values"] = _braces([repr(v) for v in meta.band_gains])
        if units == "source" and meta.band_offsets is not None:
            mine["data offset values"] = _braces([repr(v) for v in meta.band_offsets])
    entries: list[tuple[str, str]] = []
    for key, value in source:
        lowered = key.lower()
        if lowered in dropped:
            continue
        entries.append((key, mine.pop(lowered, value)))
    order = ("description", "samples", "lines", "bands", "header offset", "file type", "data type", "interleave")
    for key in (*order, *list(mine)):
        if key in mine:
            entries.append((key, mine.pop(key)))
    return entries


def _number(value: float, dtype: np.dtype) -> str:
    return str(int(value)) if np.issubdtype(dtype, np.integer) or float(value).is_integer() else repr(float(value))


def _render(entries: list[tuple[str, str]]) -> str:
    return "ENVI\n" + "".join(f"{key} = {value}\n" for key, value in entries)


class EnviStrips(StripWriter):
    """ENVI: the data file in the header's interleave (BSQ: a band's rows; BIL: whole lines; BIP: whole lines, bands
    innermost) and byte order, each strip written at its offsets; ``factor``: the ``reflectance scale factor`` to
    declare (the source's, when written in its units)."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, options: WriteOptions
    ) -> None:
        super().__init__(path, shape, dtype, meta, options)
        with self._removed_on_error():
            self.layout = envi_layout(path, shape, self.dtype, meta, options.units, options.factor)
            self.stored = self.layout.stored(self.dtype)
            c, h, w = shape
            self.raw = RawFile(self.staging / self.layout.data_name, c * h * w * self.dtype.itemsize)

    def write(self, first_row: int, rows: np.ndarray) -> None:
        for start in range(0, rows.shape[1], ROWS_AT_ONCE):  # a whole scene is one strip: no second copy of it
            self._put(first_row + start, rows[:, start : start + ROWS_AT_ONCE])

    def _put(self, first_row: int, rows: np.ndarray) -> None:
        c, h, w = self.shape
        size = self.dtype.itemsize
        values = rows.astype(self.stored, copy=False)
        if self.layout.interleave == "bsq":
            for band in range(c):
                self.raw.put((band * h + first_row) * w * size, values[band])
        elif self.layout.interleave == "bil":
            self.raw.put(first_row * c * w * size, np.transpose(values, (1, 0, 2)))
        else:
            self.raw.put(first_row * w * c * size, np.transpose(values, (1, 2, 0)))

    def _finish(self) -> None:
        self.raw.close()
        publish_envi(self.path, self.staging, self.layout, self.meta.to_json())


__all__ = ["ENVI_DATA_TYPES", "INTERLEAVE_AXES", "EnviLayout", "EnviStrips", "envi_layout", "publish_envi"]
