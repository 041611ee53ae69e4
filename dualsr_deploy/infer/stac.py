"""STAC out: an Item beside each output (``--stac``: ``OUT/<name>.item.json``) and a Catalog of the run
(``OUT/catalog.json``), as the OGC application packages of NASA's and ESA's platforms expect a tool's results.

An Item is made from the output file as a client opens it (its header read back: bands, wavelengths, FWHM, no-data,
scale, grid), not from what the run meant to write, and says where it came from:

- ``assets``: ``data`` (the output; an ENVI output's data file, with its header as ``header``), ``qa`` (``--qa``)
  and ``bicubic`` (``--reference bicubic``), each with its media type and roles; the data asset's ``bands`` (STAC 1.1)
  with ``eo:center_wavelength`` and ``eo:full_width_half_max`` (µm), ``nodata``, ``data_type``, and ``raster:scale``
  / ``raster:offset`` where the file declares them;
- ``proj:code`` (or ``proj:wkt2``), ``proj:transform`` and ``proj:shape`` of the output's grid, and the footprint in
  longitude/latitude (``geometry``, ``bbox``) where the output has a map grid (else ``geometry`` is null);
- ``processing:software`` and ``processing:lineage`` (the method, scale, stage, weights and their SHA-256), and
  ``dualsr:*`` fields for each; a ``derived_from`` link to the input (its URL, or its path);
- ``datetime``: the acquisition time where the input's metadata gives one (``time_coverage_start``, ENVI's
  ``acquisition time`` …), else the processing time, and ``dualsr:datetime`` says which.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy._version import __version__
from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.data.formats import open_scene, writing
from dualsr_deploy.data.formats.envi.read import PROJECTION_KEY as ENVI_PROJECTION_KEY
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.optional import find

STAC_VERSION = "1.1.0"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
EO = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v2.0.0/schema.json"
PROCESSING = "https://stac-extensions.github.io/processing/v1.1.0/schema.json"
ITEM_SUFFIX = ".item.json"
CATALOG_NAME = "catalog.json"

_MEDIA = {
    ".h5": "application/x-hdf5",
    ".nc": "application/netcdf",
    ".tif": "image/tiff; application=geotiff",
    ".npy": "application/x-npy",
    ".mat": "application/x-matlab-data",
    ".hdr": "text/plain",
    ".zarr": "application/vnd.zarr",
}
_DATA_TYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
               "float64"}  # fmt: skip
_TIME_KEYS = re.compile(r"^(time_coverage_start|acquisition[ _]?(time|date)|start[ _]?time|datetime)$", re.I)


def item_path(output: Path) -> Path:
    """Where the Item of ``output`` is written: beside it, ``<name>.item.json``."""
    name = output.name[: -len(output.suffix)] if output.suffix and not output.is_dir() else output.name
    return output.with_name(name + ITEM_SUFFIX)


def item_id(name: str) -> str:
    return name.replace("/", "-")


def with_item(record: SceneRecord, qa: bool, reference: bool) -> SceneRecord:
    """``record`` after its Item was written (``--stac``); a record whose Item cannot be written is ``failed``,
    saying why (its output stays: ``--resume`` redoes the scene)."""
    import dataclasses

    if record.status != "ok" or not record.output:
        return record
    from dualsr_deploy.infer.quality import qa_path
    from dualsr_deploy.infer.reference import reference_path

    output = Path(record.output)
    extra = {"qa": qa_path(output)} if qa else {}
    if reference:
        extra["bicubic"] = reference_path(output)
    try:
        write_item(record, extra)
    except Exception as error:  # whatever reading the output back raised: this scene's failure
        why = f"written, but its STAC Item could not be made ({type(error).__name__}: {error})"
        return dataclasses.replace(record, status="failed", error=why)
    return record


def write_item(record: SceneRecord, extra: dict[str, Path] | None = None) -> Path:
    """Write the Item of ``record``'s output beside it (atomically) and return its path; ``extra``: more assets
    by key (``qa``, ``bicubic``) that exist beside it."""
    assert record.output is not None
    output = Path(record.output)
    path = item_path(output)
    item = make_item(record, output, {k: v for k, v in (extra or {}).items() if v.exists()})
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(item, indent=1, sort_keys=True) + "\n")
    return path


def make_item(record: SceneRecord, output: Path, extra: dict[str, Path]) -> dict[str, Any]:
    with open_scene(output) as reader:
        _bands, height, width = reader.shape
        dtype = str(reader.dtype)
        wavelengths, fwhm, nodata = reader.wavelengths, reader.fwhm, reader.nodata
        gains, offsets, names = reader.band_gains, reader.band_offsets, reader.band_names
        declared, georef, attrs = reader.declared_scale, reader.georef, dict(reader.attrs)
        files = writing(output).content(output)
    if output.suffix.lower() == ".hdr":  # ENVI's own entries, kept from the source's header
        attrs.update(_envi_times(output))
    extensions = {EO, PROCESSING}
    properties: dict[str, Any] = {}
    when, which = _acquired(attrs)
    properties["datetime"] = when
    properties["dualsr:datetime"] = which
    properties["created"] = _now()
    properties["processing:software"] = {"dualsr-deploy": __version__}
    weights = attrs.get("weights_sha256", "")
    properties["processing:lineage"] = (
        f"DualSR super-resolution ×{record.scale} ({record.stage}) of {record.input} with CoarSR weights "
        f"{record.weights} (sha256 {weights or 'unknown'}), {record.backend}"
    )
    for key in ("stage", "scale", "weights", "backend"):
        properties[f"dualsr:{key}"] = getattr(record, key)
    geometry, bbox = None, None
    if georef is not None and georef.crs is None:  # ENVI's map info names UTM zones without a WKT
        georef = replace(georef, crs=_envi_utm(attrs.get(ENVI_PROJECTION_KEY, "")))
    if georef is not None:
        extensions.add(PROJECTION)
        properties["proj:transform"] = [float(v) for v in georef.transform]
        properties["proj:shape"] = [int(height), int(width)]
        code = _epsg(georef.crs)
        if code is not None:
            properties["proj:code"] = code
        elif georef.crs:
            properties["proj:wkt2"] = georef.crs
        geometry, bbox = _footprint(georef.transform, georef.crs, height, width)
    bands = []
    for index in range(_bands):
        band: dict[str, Any] = {"name": names[index] if names and index < len(names) else f"band_{index + 1}"}
        if wavelengths and index < len(wavelengths):
            band["eo:center_wavelength"] = round(float(wavelengths[index]) / 1000.0, 9)
        if fwhm and index < len(fwhm):
            band["eo:full_width_half_max"] = round(float(fwhm[index]) / 1000.0, 9)
        if nodata is not None and np.isfinite(nodata):
            band["nodata"] = float(nodata)
        elif nodata is not None:
            band["nodata"] = "nan" if np.isnan(nodata) else ("inf" if nodata > 0 else "-inf")
        band["data_type"] = dtype if dtype in _DATA_TYPES else "other"
        if gains and index < len(gains):
            band["raster:scale"] = float(gains[index])
            band["raster:offset"] = float(offsets[index]) if offsets and index < len(offsets) else 0.0
            extensions.add(RASTER)
        elif declared not in (None, 1.0):
            band["raster:scale"] = 1.0 / float(declared)
            extensions.add(RASTER)
        bands.append(band)
    assets = _assets(output, files, bands, extra)
    links = [
        {"rel": "root", "href": _relative(output.parent, _catalog_of(output, record)), "type": "application/json"},
        {"rel": "parent", "href": _relative(output.parent, _catalog_of(output, record)), "type": "application/json"},
        {"rel": "derived_from", "href": record.input, "title": "the LR scene this was super-resolved from"},
    ]
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": sorted(extensions),
        "id": item_id(record.name),
        "geometry": geometry,
        "properties": properties,
        "links": links,
        "assets": assets,
    }
    if bbox is not None:
        item["bbox"] = bbox
    return item


def _catalog_of(output: Path, record: SceneRecord) -> Path:
    """The run's catalog: in the output folder, as many levels up as the scene's name has folders."""
    return output.parents[record.name.count("/")] / CATALOG_NAME


def _relative(folder: Path, target: Path) -> str:
    relative = os.path.relpath(target, folder)
    return relative if relative.startswith("..") else f"./{relative}"


def _assets(output: Path, files: list[Path], bands: list[dict[str, Any]], extra: dict[str, Path]) -> dict[str, Any]:
    suffix = output.suffix.lower() if not output.is_dir() else ".zarr"
    media = _MEDIA.get(suffix, "application/octet-stream")
    if suffix == ".tif" and _is_cog(output):
        media = "image/tiff; application=geotiff; profile=cloud-optimized"
    assets: dict[str, Any] = {}
    if suffix == ".hdr" and len(files) > 1:  # ENVI: the data file is the data, its header the metadata
        assets["data"] = {"href": f"./{files[1].name}", "type": "application/x-binary", "roles": ["data"]}
        assets["header"] = {"href": f"./{output.name}", "type": "text/plain", "roles": ["metadata"]}
    else:
        assets["data"] = {"href": f"./{output.name}", "type": media, "roles": ["data"]}
    assets["data"]["title"] = "super-resolved cube"
    assets["data"]["bands"] = bands
    for key, path in extra.items():
        kind = _MEDIA.get(path.suffix.lower(), "application/octet-stream")
        roles = ["data", "quality"] if key == "qa" else ["data", "reference"]
        assets[key] = {"href": f"./{path.name}", "type": kind, "roles": roles}
    return assets


def _is_cog(path: Path) -> bool:
    rasterio = find("rasterio")
    if rasterio is None:
        return False
    try:
        with rasterio.open(path) as dataset:
            return bool(dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" or dataset.overviews(1))
    except Exception:  # not a TIFF rasterio reads: no COG claim
        return False


def _envi_utm(projection: str) -> str | None:
    """``EPSG:326zz``/``327zz`` for ENVI's ``UTM, …, zone, North|South, WGS-84`` map info, else None."""
    fields = [field.strip().lower() for field in projection.split("|")]
    if len(fields) >= 4 and fields[0] == "utm" and fields[1].isdigit() and fields[3] in ("wgs-84", "wgs84"):
        zone = int(fields[1])
        if 1 <= zone <= 60 and fields[2] in ("north", "south"):
            return f"EPSG:{(32600 if fields[2] == 'north' else 32700) + zone}"
    return None


def _epsg(crs: str | None) -> str | None:
    if not crs:
        return None
    match = re.fullmatch(r"\s*EPSG:(\d+)\s*", crs, re.I)
    if match:
        return f"EPSG:{match[1]}"
    rasterio = find("rasterio.crs")
    if rasterio is None:
        return None
    try:
        code = rasterio.CRS.from_user_input(crs).to_epsg()
    except Exception:  # a CRS rasterio cannot read: said as WKT instead
        return None
    return f"EPSG:{code}" if code else None


def _footprint(
    transform: tuple[float, ...], crs: str | None, height: int, width: int
) -> tuple[dict[str, Any] | None, list[float] | None]:
    """The grid's outline in longitude/latitude (GeoJSON) and its bbox, where the CRS can be transformed."""
    warp = find("rasterio.warp")
    if not crs or warp is None:
        return None, None
    a, b, c, d, e, f = transform
    corners = [(0, 0), (width, 0), (width, height), (0, height)]
    xs = [a * col + b * row + c for col, row in corners]
    ys = [d * col + e * row + f for col, row in corners]
    try:
        lons, lats = warp.transform(crs, "EPSG:4326", xs, ys)
    except Exception:  # a CRS without a way to longitude/latitude: no footprint
        return None, None
    ring = [[round(x, 9), round(y, 9)] for x, y in zip(lons, lats, strict=True)]
    ring.append(ring[0])
    bbox = [round(min(lons), 9), round(min(lats), 9), round(max(lons), 9), round(max(lats), 9)]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def _acquired(attrs: dict[str, str]) -> tuple[str, str]:
    for key, value in attrs.items():
        if _TIME_KEYS.match(key.strip()):
            parsed = _parse_time(str(value))
            if parsed is not None:
                return parsed, f"acquisition ({key})"
    return _now(), "processing (the input gives no acquisition time)"


def _envi_times(header: Path) -> dict[str, str]:
    try:
        text = header.read_text(errors="replace")[: 1 << 20]
    except OSError:
        return {}
    return {
        m[1].strip(): m[2].strip()
        for m in re.finditer(r"^\s*(acquisition (?:time|date))\s*=\s*(\S+)", text, re.M | re.I)
    }


def _parse_time(text: str) -> str | None:
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def item_links(out_dir: Path, records: Iterable[SceneRecord]) -> list[str]:
    """The Items of the ``ok`` records whose Item file is in ``out_dir``, as hrefs relative to it."""
    hrefs = []
    for record in records:
        if record.status == "ok" and record.output and item_path(Path(record.output)).is_file():
            hrefs.append(_relative(out_dir, item_path(Path(record.output))))
    return hrefs


def write_catalog(out_dir: Path, items: list[str], title: str = "") -> Path | None:
    """``OUT/catalog.json`` linking ``items`` (hrefs relative to ``out_dir``); None when there are none."""
    if not items:
        return None
    links: list[dict[str, Any]] = [{"rel": "root", "href": f"./{CATALOG_NAME}", "type": "application/json"}]
    links += [{"rel": "item", "href": href, "type": "application/geo+json"} for href in sorted(items)]
    catalog = {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "dualsr-run",
        "title": title or "DualSR super-resolved scenes",
        "description": f"Scenes super-resolved by dualsr-deploy {__version__}; each Item says how.",
        "links": links,
    }
    target = out_dir / CATALOG_NAME
    with atomic_output(target) as tmp:
        tmp.write_text(json.dumps(catalog, indent=1) + "\n")
    return target


__all__ = ["CATALOG_NAME", "ITEM_SUFFIX", "item_links", "item_path", "make_item", "write_catalog", "write_item"]
