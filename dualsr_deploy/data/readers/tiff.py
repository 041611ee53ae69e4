"""TIFF files: multi-page (one band per page) or multi-sample through tifffile, GeoTIFF through rasterio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.data.readers.base import SceneReader, read_window, reading, restore_written_meta
from dualsr_deploy.data.scene import GeoReference, Window
from dualsr_deploy.errors import DataError
from dualsr_deploy.optional import require


def import_rasterio() -> Any:
    return require("rasterio", feature="GeoTIFF", extra="formats")


def is_geotiff(path: Path) -> bool:
    import tifffile

    with reading(path), tifffile.TiffFile(path) as tif:
        return bool(tif.is_geotiff)


class TiffReader(SceneReader):
    """A plain (not georeferenced) TIFF; the band axis is whichever of tifffile's axes is not Y or X."""

    format = "tiff"

    def __init__(self, path: Path) -> None:
        import tifffile

        with reading(path), tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes, tuple(series.shape)
            description = str(getattr(tif.pages.first, "description", ""))
        kept = [(axis, size) for axis, size in zip(axes, shape, strict=True) if size > 1 or axis in "YX"]
        names = "".join(axis for axis, _ in kept)
        if len(kept) != 3 or "Y" not in names or "X" not in names:
            raise DataError(f"{path}: TIFF with axes {axes} {shape} is not a cube (bands, rows, columns)")
        super().__init__(path, path.stem, layout="".join("h" if a == "Y" else "w" if a == "X" else "c" for a in names))
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
            data = tifffile.memmap(self.path, mode="r")
        except ValueError:
            data = np.asarray(tifffile.imread(self.path))
        return read_window(np.reshape(data, self._squeezed), self.layout, window)


class GeoTiffReader(SceneReader):
    """A GeoTIFF: bands are raster bands, windows read natively, georeferencing kept."""

    format = "geotiff"

    def __init__(self, path: Path) -> None:
        rasterio = import_rasterio()
        with reading(path):
            self._dataset = rasterio.open(path)
        super().__init__(path, path.stem)
        dataset = self._dataset
        if len(set(dataset.dtypes)) != 1:
            raise DataError(f"{path}: bands of different types {set(dataset.dtypes)}")
        transform = dataset.transform
        self.georef = GeoReference(
            (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f),
            None if dataset.crs is None else dataset.crs.to_wkt(),
        )
        if dataset.nodata is not None:
            self.nodata = float(dataset.nodata)
        self._band_tags(dataset)
        tags = dataset.tags()
        restore_written_meta(self, tags.get("DUALSR_SCENE"))
        if "wavelengths" in tags and self.wavelengths is None:
            self.wavelengths = tuple(float(w) for w in tags["wavelengths"].split(","))

    def _band_tags(self, dataset: Any) -> None:
        """Per-band GDAL metadata (``wavelength``, ``fwhm``, ``bbl``, as EnMAP and ENVI-made GeoTIFFs carry it) and
        band scales (physical value = stored × scale: the factor to divide by is 1/scale)."""
        tags = [dataset.tags(band) for band in range(1, dataset.count + 1)]
        if all(dataset.descriptions):
            self.band_names = tuple(str(d) for d in dataset.descriptions)
        for key, target in (("wavelength", "wavelengths"), ("fwhm", "fwhm")):
            if all(key in t for t in tags):
                try:
                    setattr(self, target, tuple(float(t[key]) for t in tags))
                except ValueError:
                    self.notes.append(f"unreadable per-band {key} tags ignored")
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
