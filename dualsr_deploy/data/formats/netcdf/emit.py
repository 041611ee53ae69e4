"""NASA EMIT L1B radiance / L2A reflectance granules (NetCDF4, read with h5py), as the EMIT SDS writes them and
its ``emit_tools.py`` reads them:

- root ``radiance`` or ``reflectance``: ``(downtrack, crosstrack, bands)`` float32, ``_FillValue`` −9999;
- group ``sensor_band_parameters``: ``wavelengths``, ``fwhm`` and (L2A) ``good_wavelengths`` (0 = bad band);
- group ``location``: ``lat``, ``lon``, ``elev`` (downtrack × crosstrack) and ``glt_x``, ``glt_y`` (the ortho grid's
  1-based indices into the swath, 0 = no data);
- global attributes ``geotransform`` (of the ortho grid) and ``spatial_ref``.

The scene is the swath (not orthorectified); the location group and the global attributes are kept for the writer
(:mod:`dualsr_deploy.data.formats.netcdf.write`), which writes the same structure back at ×s.
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
from dualsr_deploy.data.scene import Window
from dualsr_deploy.data.validity import Masking
from dualsr_deploy.errors import DataError

CUBE_NAMES = ("reflectance", "radiance")
BANDS_GROUP = "sensor_band_parameters"


def is_emit(handle: Any) -> bool:
    """An HDF5/NetCDF file in EMIT's structure: a root cube and the band-parameter group."""
    return any(name in handle for name in CUBE_NAMES) and BANDS_GROUP in handle


def _attr_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
        return " ".join(v.decode() if isinstance(v, bytes) else str(v) for v in value.ravel())
    if isinstance(value, np.ndarray):  # numbers written out in full, whatever numpy's print options are
        return "[" + " ".join(repr(v.item()) for v in value.ravel()) + "]"
    return str(value.item() if isinstance(value, np.generic) else value)


class EmitReader(SceneReader):
    format = "emit"

    def __init__(self, path: Path, *, confine: Confinement | None = None) -> None:
        with reading(path):
            self._file = open_for_reading(path)
        try:
            handle = self._file
            check_hdf5_self_contained(handle, path)
            names = [name for name in CUBE_NAMES if name in handle]
            if not names or BANDS_GROUP not in handle:
                raise DataError(
                    f"{path}: not an EMIT granule (no root {' or '.join(CUBE_NAMES)} beside a {BANDS_GROUP} group)"
                )
            super().__init__(path, path.stem, key=names[0], layout="hwc", confine=confine)
            check_dimension_scales(self._file, path)
            self._dataset = handle[names[0]]
            if self._dataset.ndim != 3:
                raise DataError(f"{path}: {names[0]} is {self._dataset.shape}, not (downtrack, crosstrack, bands)")
            bands = int(self._dataset.shape[2])
            params = handle[BANDS_GROUP]
            for name in ("wavelengths", "fwhm", "good_wavelengths"):
                if name in params:
                    key = f"{BANDS_GROUP}/{name}"
                    values = numbers(small_array(params[name], key, path), key, path, count=bands)
                    if name == "good_wavelengths":
                        self.declared_bad = {i for i, good in enumerate(values) if good == 0}
                    else:
                        setattr(self, "wavelengths" if name == "wavelengths" else "fwhm", values)
            fill = self._dataset.attrs.get("_FillValue")
            self.nodata = number(np.ravel(fill)[0], "_FillValue", path, finite=False) if fill is not None else -9999.0
            for key in ("geotransform", "spatial_ref", "title", "summary", "product_version"):
                if key in handle.attrs:
                    self.attrs[f"emit_{key}"] = _attr_text(handle.attrs[key])
            restore_written_meta(self, handle.attrs.get("dualsr_scene"))
            self._mask = self.mask_path()  # claimed now, so that --resume fingerprints it with the granule
        except BaseException:
            self._file.close()
            raise

    @property
    def shape(self) -> tuple[int, int, int]:
        rows, cols, bands = self._dataset.shape
        return int(bands), int(rows), int(cols)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._dataset.dtype)

    def _read(self, window: Window | None) -> np.ndarray:
        return read_window(self._dataset, "hwc", window)

    def mask_path(self) -> Path | None:
        """The L2A MASK granule beside this one (``EMIT_L2A_RFL_…`` → ``EMIT_L2A_MASK_…``), if there is one; a
        :class:`DataError` when what is there may not be read (a link out of the archive, a FIFO)."""
        if "_RFL_" not in self.path.name:
            return None
        return self.claim_if_present(self.path.with_name(self.path.name.replace("_RFL_", "_MASK_")), "mask granule")

    def pixel_invalid(self, raw: np.ndarray, masking: Masking, window: Window | None) -> np.ndarray | None:
        """With ``masking.product_masks``: pixels the MASK granule's ``Aggregate Flag`` band sets (cloud, cirrus,
        water, spacecraft, dilated cloud, as the EMIT SDS aggregates them)."""
        if not masking.product_masks:
            return None
        path = self._mask
        if path is None:
            wanted = self.path.name.replace("_RFL_", "_MASK_")
            raise DataError(f"{self.path}: --product-masks asks for its MASK granule, and {wanted} is not beside it")
        import h5py

        with reading(path), h5py.File(path, "r") as handle:
            check_hdf5_self_contained(handle, path)
            key = f"{BANDS_GROUP}/mask_bands"
            names = [_attr_text(n) for n in small_array(handle[key], key, path)]
            if "Aggregate Flag" not in names:
                raise DataError(f"{path}: no 'Aggregate Flag' among its mask bands ({', '.join(names)})")
            flags = read_window(handle["mask"], "hwc", window)[names.index("Aggregate Flag")]
        if flags.shape != raw.shape[1:]:
            raise DataError(f"{path}: its mask is {flags.shape}, the granule's pixels {raw.shape[1:]}")
        return np.asarray(flags > 0)

    def close(self) -> None:
        super().close()
        self._file.close()


__all__ = ["CUBE_NAMES", "EmitReader", "is_emit"]
