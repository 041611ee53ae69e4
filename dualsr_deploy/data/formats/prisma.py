"""ASI PRISMA L1 / L2 hyperspectral products (HDF-EOS5 ``.he5``, read with h5py), as the PRISMA Product
Specification lays them out:

- cubes ``HDFEOS/SWATHS/PRS_<level>_HCO/Data Fields/VNIR_Cube`` and ``SWIR_Cube``, axis order (rows, **bands**,
  columns), uint16 DN;
- wavelengths in the root attributes ``List_Cw_Vnir`` / ``List_Cw_Swir`` (descending; 0 marks an unused band), with
  ``List_Fwhm_Vnir`` / ``List_Fwhm_Swir``;
- L2 reflectance = ``L2ScaleVnirMin`` + DN/65535 · (``L2ScaleVnirMax`` − ``L2ScaleVnirMin``) (likewise SWIR): per-band
  gains and offsets here, so the network sees reflectance and outputs go back to DN;
- L2D georeferencing from ``Epsg_Code`` and ``Product_ULcorner_easting/northing``, ``Product_LRcorner_easting/
  northing``, taken as the centres of the corner pixels.

Rules of this reader: unused bands (wavelength 0) are dropped; the VNIR/SWIR overlap (≈ 920–1010 nm) keeps the
VNIR bands and drops SWIR bands at or below the longest VNIR wavelength (VNIR has the better signal there); the
bands are then ordered by wavelength; a pixel whose spectrum is all zero is no-data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.data.confine import Confinement, check_hdf5_self_contained
from dualsr_deploy.data.formats.chunk_cache import open_for_reading
from dualsr_deploy.data.formats.reader import SceneReader, reading, restore_written_meta
from dualsr_deploy.data.formats.row import Format
from dualsr_deploy.data.metadata import number, numbers
from dualsr_deploy.data.scene import GeoReference, Window
from dualsr_deploy.data.validity import Masking
from dualsr_deploy.errors import DataError

_SWATH = re.compile(r"PRS_(L1|L2[BCD])_HCO")


def prisma_swath(handle: Any) -> str | None:
    """The hyperspectral swath group's name (``PRS_L2D_HCO``, …), or None when the file is not a PRISMA product."""
    swaths = handle.get("HDFEOS/SWATHS")
    if swaths is None:
        return None
    names = [name for name in swaths if _SWATH.fullmatch(name)]
    return names[0] if names else None


def _attr(handle: Any, name: str, path: Path) -> np.ndarray:
    if name not in handle.attrs:
        raise DataError(f"{path}: the PRISMA attribute {name} is missing")
    return np.asarray(numbers(handle.attrs[name], f"attribute {name}", path), dtype=np.float64)


class PrismaReader(SceneReader):
    format = "prisma"

    def __init__(self, path: Path, *, confine: Confinement | None = None) -> None:
        with reading(path):
            self._file = open_for_reading(path)
        try:
            handle = self._file
            check_hdf5_self_contained(handle, path)
            swath = prisma_swath(handle)
            if swath is None:
                raise DataError(f"{path}: not a PRISMA product (no HDFEOS/SWATHS/PRS_*_HCO swath)")
            super().__init__(path, path.stem, key=swath, layout="hcw", confine=confine)
            fields = handle[f"HDFEOS/SWATHS/{swath}/Data Fields"]
            self._cubes = {
                region: fields[f"{region}_Cube"] for region in ("VNIR", "SWIR") if f"{region}_Cube" in fields
            }
            if not self._cubes:
                raise DataError(f"{path}: {swath} has no VNIR_Cube or SWIR_Cube")
            shapes = {region: cube.shape for region, cube in self._cubes.items()}
            if len({(s[0], s[2]) for s in shapes.values()}) != 1 or any(len(s) != 3 for s in shapes.values()):
                raise DataError(f"{path}: VNIR and SWIR cubes differ in rows × columns ({shapes})")
            self._plan(handle, path, swath)
            self.output_nodata = 0.0  # outputs mark no-data as PRISMA does: DN 0 in every band
            self._georef(handle)
            restore_written_meta(self, handle.attrs.get("dualsr_scene"))
        except BaseException:
            self._file.close()
            raise

    def _plan(self, handle: Any, path: Path, swath: str) -> None:
        """Which band of which cube each scene band is (sorted by wavelength), with its fwhm, gain and offset."""
        kept: list[tuple[float, str, int, float, float, float]] = []  # centre, region, index, fwhm, gain, offset
        scaled = swath.startswith("PRS_L2")
        longest_vnir = 0.0
        for region in ("VNIR", "SWIR"):
            if region not in self._cubes:
                continue
            name = region.capitalize()
            centres = _attr(handle, f"List_Cw_{name}", path)
            widths = _attr(handle, f"List_Fwhm_{name}", path)
            count = self._cubes[region].shape[1]
            if centres.size != count or widths.size != count:
                raise DataError(
                    f"{path}: List_Cw_{name} has {centres.size} and List_Fwhm_{name} {widths.size} values, the "
                    f"{region} cube {count} bands; the wavelength lists do not fit the cube"
                )
            low, high = 0.0, 65535.0
            if scaled:
                low = float(_attr(handle, f"L2Scale{name}Min", path)[0])
                high = float(_attr(handle, f"L2Scale{name}Max", path)[0])
            for index, (centre, width) in enumerate(zip(centres.tolist(), widths.tolist(), strict=True)):
                if centre <= 0 or (region == "SWIR" and centre <= longest_vnir):
                    continue  # an unused band, or the VNIR/SWIR overlap (VNIR kept)
                kept.append((centre, region, index, width, (high - low) / 65535.0, low))
            if region == "VNIR":
                longest_vnir = max((c for c in centres.tolist() if c > 0), default=0.0)
        if not kept:
            raise DataError(f"{path}: no PRISMA band has a wavelength")
        kept.sort()
        self._bands = [(region, index) for _centre, region, index, *_rest in kept]
        self.wavelengths = tuple(band[0] for band in kept)
        self.fwhm = tuple(band[3] for band in kept)
        if scaled:
            self.band_gains = tuple(band[4] for band in kept)
            self.band_offsets = tuple(band[5] for band in kept)
        self.attrs["prisma_swath"] = swath

    def _georef(self, handle: Any) -> None:
        names = (
            "Product_ULcorner_easting",
            "Product_ULcorner_northing",
            "Product_LRcorner_easting",
            "Product_LRcorner_northing",
            "Epsg_Code",
        )
        if not all(name in handle.attrs for name in names):
            return
        ul_e, ul_n, lr_e, lr_n, epsg = (
            number(np.ravel(handle.attrs[name])[0], f"attribute {name}", self.path) for name in names
        )
        _c, rows, cols = self.shape
        dx = (lr_e - ul_e) / max(cols - 1, 1)
        dy = (lr_n - ul_n) / max(rows - 1, 1)
        self.georef = GeoReference((dx, 0.0, ul_e - dx / 2, 0.0, dy, ul_n - dy / 2), f"EPSG:{int(epsg)}")

    def pixel_invalid(self, raw: np.ndarray, masking: Masking, window: Window | None) -> np.ndarray | None:
        """All-zero spectra are PRISMA's no-data."""
        return np.asarray(~raw.any(axis=0))

    @property
    def shape(self) -> tuple[int, int, int]:
        first = next(iter(self._cubes.values()))
        return len(self._bands), int(first.shape[0]), int(first.shape[2])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(next(iter(self._cubes.values())).dtype)

    def _read(self, window: Window | None) -> np.ndarray:
        rows = slice(None) if window is None else window.rows
        cols = slice(None) if window is None else window.cols
        blocks = {
            region: np.asarray(cube[rows, :, cols])  # (rows, bands, cols)
            for region, cube in self._cubes.items()
            if any(r == region for r, _ in self._bands)
        }
        return np.ascontiguousarray(np.stack([blocks[region][:, index, :] for region, index in self._bands]))

    def close(self) -> None:
        super().close()
        self._file.close()


__all__ = ["PrismaReader", "prisma_swath"]


PRISMA = Format(
    "prisma",
    "PRISMA L1/L2 (HDF-EOS5; written as HDF5 with its wavelengths, gains and georeferencing)",
    sniff=lambda probe: probe.hdf5 is not None and prisma_swath(probe.hdf5) is not None,
    reader=PrismaReader,
    scene_suffixes=(".he5",),
    output=".h5",
)
