"""TIFF files: multi-page (one band per page) or multi-sample through tifffile, GeoTIFF through rasterio."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.data.confine import Confinement, gdal_sidecars
from dualsr_deploy.data.formats.reader import SceneReader, read_window, reading, restore_written_meta
from dualsr_deploy.data.metadata import number, numbers
from dualsr_deploy.data.remote_ranges import VSI_OPEN, is_vsi
from dualsr_deploy.data.scene import GeoReference, Window
from dualsr_deploy.errors import DataError
from dualsr_deploy.optional import require


def import_rasterio() -> Any:
    return require("rasterio", feature="GeoTIFF", extra="formats")


# tifffile reads the file's own pages only: OME multi-file series (``<UUID FileName="../x.ome.tif">``), Micro-Manager
# stacks and NDTiff datasets would open other files named by this one.
OWN_PAGES_ONLY: dict[str, Any] = {"is_ome": False, "is_mmstack": False, "is_ndtiff": False, "_multifile": False}


def open_tiff(path: Path) -> Any:
    """A :class:`tifffile.TiffFile` that reads nothing but ``path``."""
    import tifffile

    return tifffile.TiffFile(path, **OWN_PAGES_ONLY)


def ome_other_files(description: str, path: Path) -> list[str]:
    """The files other than ``path`` that an OME-XML image description names for its planes
    (``<UUID FileName="…">``); empty for any other description."""
    if "<OME" not in description[:4096] or "FileName" not in description:
        return []
    import re

    names = sorted(set(re.findall(r'FileName\s*=\s*"([^"]*)"', description)))
    return [name for name in names if name and name != path.name]


GDAL_TAGS = ("GDAL_METADATA", "GDAL_NODATA")  # what GDAL writes into a TIFF beside georeferencing


def is_geotiff(path: Path) -> bool:
    """Whether GDAL reads this TIFF best: georeferenced, or carrying GDAL's own metadata or no-data tags (band
    names, wavelengths, scales, a no-data value), as this package's TIFF outputs do."""
    with reading(path), open_tiff(path) as tif:
        tags = tif.pages.first.tags
        return bool(tif.is_geotiff) or any(name in tags for name in GDAL_TAGS)


class TiffReader(SceneReader):
    """A plain (not georeferenced) TIFF; the band axis is whichever of tifffile's axes is not Y or X."""

    format = "tiff"

    def __init__(self, path: Path, *, confine: Confinement | None = None) -> None:
        with reading(path), open_tiff(path) as tif:
            others = ome_other_files(str(getattr(tif.pages.first, "description", "")), path)
            if others:
                raise DataError(
                    f"{path}: refused: its OME-XML takes planes from other files ({', '.join(others[:3])}); only a "
                    "file's own pages are read"
                )
            series = tif.series[0]
            if any(page is not None and page.parent is not tif for page in series.pages):
                raise DataError(f"{path}: refused: its image series reads pages from other files")
            axes, shape = series.axes, tuple(series.shape)
            description = str(getattr(tif.pages.first, "description", ""))
        kept = [(axis, size) for axis, size in zip(axes, shape, strict=True) if size > 1 or axis in "YX"]
        names = "".join(axis for axis, _ in kept)
        if len(kept) != 3 or "Y" not in names or "X" not in names:
            raise DataError(f"{path}: TIFF with axes {axes} {shape} is not a cube (bands, rows, columns)")
        layout = "".join("h" if a == "Y" else "w" if a == "X" else "c" for a in names)
        super().__init__(path, path.stem, layout=layout, confine=confine)
        self._squeezed = tuple(size for _, size in kept)
        self._dtype = np.dtype(series.dtype)
        self._c_h_w = tuple(self._squeezed[self.layout.index(axis)] for axis in "chw")
        if description.startswith("{") and '"format"' in description:
            restore_written_meta(self, description)

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self._c_h_w
        return c, h, w

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _read(self, window: Window | None) -> np.ndarray:
        import tifffile

        data: np.ndarray
        try:  # uncompressed, contiguous files map without reading; others decode once
            data = tifffile.memmap(self.path, mode="r", **OWN_PAGES_ONLY)
        except ValueError:
            with open_tiff(self.path) as tif:
                data = np.asarray(tif.series[0].asarray())
        return read_window(np.reshape(data, self._squeezed), self.layout, window)


def enmap_metadata_path(image: Path) -> Path | None:
    """``…-METADATA.XML`` beside an EnMAP ``…-SPECTRAL_IMAGE.TIF``, if there is one."""
    stem = image.stem
    if not stem.upper().endswith("SPECTRAL_IMAGE"):
        return None
    prefix = stem[: -len("SPECTRAL_IMAGE")]
    for candidate in (image.with_name(f"{prefix}METADATA.XML"), image.with_name(f"{prefix}METADATA.xml")):
        if os.path.lexists(candidate):
            return candidate
    return None


def envi_header_beside(image: Path) -> Path | None:
    """An ENVI-style ``.hdr`` beside a GeoTIFF (``X.hdr`` or ``X.tif.hdr``), if there is one."""
    for candidate in (image.with_suffix(".hdr"), image.with_name(image.name + ".hdr")):
        if os.path.lexists(candidate):
            return candidate
    return None


class GeoTiffReader(SceneReader):
    """A GeoTIFF: bands are raster bands, windows read natively, georeferencing kept."""

    format = "geotiff"

    def __init__(self, path: Path, *, confine: Confinement | None = None) -> None:
        rasterio = import_rasterio()
        confine = confine or Confinement.around(path)
        for sidecar in gdal_sidecars(path):  # GDAL reads these on its own when they are there
            confine.check(sidecar, "GDAL sidecar")
        settings = VSI_OPEN if is_vsi(path) else {}  # a remote object read by range: it alone, no listing
        with reading(path), warnings.catch_warnings(), rasterio.Env(**settings):
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a plain TIFF GDAL wrote
            self._dataset = rasterio.open(path)
        try:
            self._open(path, confine)
        except BaseException:
            self._dataset.close()
            raise

    def _open(self, path: Path, confine: Confinement) -> None:
        super().__init__(path, path.stem, confine=confine)
        for sidecar in gdal_sidecars(path):
            self.claim(sidecar, "GDAL sidecar")
        dataset = self._dataset
        if len(set(dataset.dtypes)) != 1:
            raise DataError(f"{path}: bands of different types {set(dataset.dtypes)}")
        transform = dataset.transform
        if dataset.crs is not None or not transform.is_identity:  # a TIFF with no grid has none to give back
            self.georef = GeoReference(
                (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f),
                None if dataset.crs is None else dataset.crs.to_wkt(),
            )
        if dataset.nodata is not None:
            self.nodata = float(dataset.nodata)
        self._band_tags(dataset)
        metadata_xml = enmap_metadata_path(path)
        if metadata_xml is not None:
            self._enmap_metadata(self.claim(metadata_xml, "EnMAP metadata"))
        header = envi_header_beside(path)
        if header is not None:
            self._envi_header(self.claim(header, "ENVI header"))
        tags = dataset.tags()
        restore_written_meta(self, tags.get("DUALSR_SCENE"))
        if "wavelengths" in tags and self.wavelengths is None:
            self.wavelengths = numbers(tags["wavelengths"].split(","), "tag wavelengths", path)

    def _enmap_metadata(self, xml: Path) -> None:
        """EnMAP's ``METADATA.XML`` beside its spectral image: per band (``specific/bandCharacterisation/bandID``)
        the centre wavelength, FWHM, gain and offset (physical = gain · DN + offset); bands whose statistics
        (``product/bandStatistics``) show no variation at all are bad."""
        import xml.etree.ElementTree as ElementTree

        try:
            root = ElementTree.parse(xml).getroot()
        except (OSError, ElementTree.ParseError) as exc:
            raise DataError(f"{xml}: cannot read the EnMAP metadata ({exc})") from None
        bands = root.findall(".//bandCharacterisation/bandID")
        count = self.shape[0]
        if len(bands) != count:
            raise DataError(
                f"{xml}: describes {len(bands)} bands, its spectral image {self.path.name} has {count}; they are not "
                "one product"
            )

        def values(tag: str) -> tuple[float, ...]:
            found = [band.findtext(tag) for band in bands]
            if any(text is None for text in found):
                raise DataError(f"{xml}: a bandID lacks {tag}")
            return numbers(found, tag, xml)

        self.wavelengths = values("wavelengthCenterOfBand")
        self.fwhm = values("FWHMOfBand")
        gains, offsets = values("GainOfBand"), values("OffsetOfBand")
        if any(g not in (0.0, 1.0) for g in gains) or any(offsets):
            self.band_gains, self.band_offsets = gains, (offsets if any(offsets) else None)
        for band in root.findall(".//bandStatistics/bandID"):
            spread = band.findtext("stdDeviation")
            index = int(number(band.get("number", "0"), "bandStatistics bandID number", xml))
            if spread is not None and number(spread, "stdDeviation", xml) == 0.0 and 1 <= index <= count:
                self.declared_bad.add(index - 1)
        self.attrs["enmap_metadata"] = xml.name

    def _envi_header(self, header: Path) -> None:
        """An ENVI-style header beside the GeoTIFF (DESIS L2A, ENVI-made GeoTIFFs): wavelength, fwhm, bbl, data
        gain/offset values, data ignore value, band names, for the bands of this image."""
        from dualsr_deploy.data.formats.envi.read import import_envi

        envi = import_envi()
        try:
            meta = envi.read_envi_header(str(header))
        except Exception as exc:  # spectral raises its own header errors
            raise DataError(f"{header}: cannot read the ENVI header beside {self.path.name} ({exc})") from None
        count = self.shape[0]
        bands = int(number(meta.get("bands", count), "bands", header))
        if bands != count:
            raise DataError(f"{header}: describes {bands} bands, the GeoTIFF {self.path.name} has {count}")

        def per_band(key: str) -> tuple[float, ...] | None:
            values = meta.get(key)
            return None if values is None else numbers(values, key, header, count=count)

        self.wavelengths = per_band("wavelength") or self.wavelengths
        self.fwhm = per_band("fwhm") or self.fwhm
        gains, offsets = per_band("data gain values"), per_band("data offset values")
        if gains is not None or offsets is not None:
            self.band_gains, self.band_offsets = gains, offsets
        flags = per_band("bbl")
        if flags is not None:
            self.declared_bad = {i for i, flag in enumerate(flags) if flag == 0}
        if "data ignore value" in meta and self.nodata is None:
            self.nodata = number(meta["data ignore value"], "data ignore value", header, finite=False)
        names = meta.get("band names")
        if names is not None and len(names) == count:
            self.band_names = tuple(str(n).strip() for n in names)
        self.attrs["envi_header"] = header.name

    def _band_tags(self, dataset: Any) -> None:
        """Per-band GDAL metadata (``wavelength``, ``fwhm``, ``bbl``, as EnMAP and ENVI-made GeoTIFFs carry it) and
        band scales (physical value = stored × scale: the factor to divide by is 1/scale)."""
        tags = [dataset.tags(band) for band in range(1, dataset.count + 1)]
        if all(dataset.descriptions):
            self.band_names = tuple(str(d) for d in dataset.descriptions)
        for key, target in (("wavelength", "wavelengths"), ("fwhm", "fwhm")):
            if all(key in t for t in tags):
                setattr(self, target, numbers([t[key] for t in tags], f"per-band {key} tags", self.path))
        if all("bbl" in t for t in tags):
            self.declared_bad = {i for i, t in enumerate(tags) if t["bbl"].strip() in ("0", "0.0")}
        if any(scale not in (0.0, 1.0) for scale in dataset.scales) or any(dataset.offsets):
            self.band_gains = tuple(float(v) if v else 1.0 for v in dataset.scales)
            self.band_offsets = tuple(float(v) for v in dataset.offsets) if any(dataset.offsets) else None

    @property
    def shape(self) -> tuple[int, int, int]:
        return int(self._dataset.count), int(self._dataset.height), int(self._dataset.width)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._dataset.dtypes[0])

    def _read(self, window: Window | None) -> np.ndarray:
        if window is None:
            return np.asarray(self._dataset.read())
        from rasterio.windows import Window as RasterWindow

        return np.asarray(self._dataset.read(window=RasterWindow(window.left, window.top, window.width, window.height)))

    def close(self) -> None:
        super().close()
        self._dataset.close()
