"""AVIRIS-3 L2A orthorectified reflectance (``*_RFL_ORT.nc``, NetCDF4 read with h5py): a group ``reflectance`` with
the cube ``reflectance`` and the band centres ``wavelength`` (and ``fwhm`` when present). The band axis is the one
whose length is the number of wavelengths (the others are rows and columns, in that order); the fill value comes from
``_FillValue``; CF georeferencing is taken where a grid-mapping variable carries GDAL's ``GeoTransform`` and
``spatial_ref``. No AVIRIS-3 sample or format document could be had here: this follows the structure the task
describes, and the tests build files to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.data.confine import Confinement, check_hdf5_self_contained
from dualsr_deploy.data.formats.chunk_cache import open_for_reading
from dualsr_deploy.data.formats.reader import (
    SceneReader,
    check_dimension_scales,
    read_window,
    reading,
    restore_written_meta,
)
from dualsr_deploy.data.metadata import number, numbers, small_array
from dualsr_deploy.data.scene import GeoReference, Window
from dualsr_deploy.errors import DataError

GROUP = "reflectance"


def is_aviris3(handle: Any) -> bool:
    group = handle.get(GROUP)
    return group is not None and hasattr(group, "keys") and "reflectance" in group and "wavelength" in group


def band_layout(shape: tuple[int, ...], bands: int, path: Path) -> str:
    """``chw``-style axis letters for a cube whose band axis is the one ``bands`` long."""
    axes = [i for i, size in enumerate(shape) if size == bands]
    if len(shape) != 3 or not axes:
        raise DataError(f"{path}: the reflectance cube {shape} has no axis of {bands} bands (its wavelength count)")
    band_axis = axes[0]
    letters, spatial = [], iter("hw")
    for axis in range(3):
        letters.append("c" if axis == band_axis else next(spatial))
    return "".join(letters)


class Aviris3Reader(SceneReader):
    format = "aviris3"

    def __init__(self, path: Path, *, confine: Confinement | None = None) -> None:
        with reading(path):
            self._file = open_for_reading(path)
        try:
            check_hdf5_self_contained(self._file, path)
            group = self._file.get(GROUP)
            if group is None or not is_aviris3(self._file):
                raise DataError(f"{path}: not an AVIRIS-3 reflectance file (no group {GROUP} with reflectance)")
            self._dataset = group["reflectance"]
            check_dimension_scales(self._file, path)
            key = f"{GROUP}/wavelength"
            wavelengths = numbers(small_array(group["wavelength"], key, path), key, path)
            layout = band_layout(tuple(self._dataset.shape), len(wavelengths), path)
            super().__init__(path, path.stem, key=f"{GROUP}/reflectance", layout=layout, confine=confine)
            self.wavelengths = wavelengths
            if "fwhm" in group:
                key = f"{GROUP}/fwhm"
                self.fwhm = numbers(small_array(group["fwhm"], key, path), key, path, count=len(wavelengths))
            fill = self._dataset.attrs.get("_FillValue")
            self.nodata = number(np.ravel(fill)[0], "_FillValue", path, finite=False) if fill is not None else None
            self._georef()
            restore_written_meta(self, self._file.attrs.get("dualsr_scene"))
        except BaseException:
            self._file.close()
            raise

    def _georef(self) -> None:
        for holder in (self._file, self._file[GROUP]):
            for name in holder:
                item = holder[name]
                transform = item.attrs.get("GeoTransform") if hasattr(item, "attrs") else None
                if transform is None:
                    continue
                text = transform.decode(errors="replace") if isinstance(transform, bytes) else str(transform)
                values = numbers(text.split(), f"{name} GeoTransform", self.path)
                if len(values) != 6:
                    raise DataError(f"{self.path}: {name} GeoTransform {text[:80]!r} has {len(values)} numbers, not 6")
                x0, dx, rx, y0, ry, dy = values
                crs = item.attrs.get("spatial_ref") or item.attrs.get("crs_wkt")
                crs_text = crs.decode() if isinstance(crs, bytes) else (str(crs) if crs is not None else None)
                self.georef = GeoReference((dx, rx, x0, ry, dy, y0), crs_text)
                return

    @property
    def shape(self) -> tuple[int, int, int]:
        sizes = dict(zip(self.layout, self._dataset.shape, strict=True))
        return int(sizes["c"]), int(sizes["h"]), int(sizes["w"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._dataset.dtype)

    def _read(self, window: Window | None) -> np.ndarray:
        return read_window(self._dataset, self.layout, window)

    def close(self) -> None:
        super().close()
        self._file.close()


__all__ = ["Aviris3Reader", "band_layout", "is_aviris3"]
