"""Which pixels and bands of a scene can be trusted, and how inference works around the others.

- **Invalid pixels**: non-finite values, the file's declared no-data value (ENVI ``data ignore value``, GeoTIFF
  ``nodata``, HDF5 ``_FillValue``/``missing_value``) and any value given with ``--nodata``. A pixel is invalid when
  any of its good bands is.
- **Bad bands**: the file's bad-band list (ENVI ``bbl``, GeoTIFF per-band ``bbl`` tags), bands that hold no valid
  value at all, and ``--bad-bands`` (indices ``0-4,103-110`` and wavelength ranges ``1340-1450nm``).
- **Segments**: the good bands split at bad bands into contiguous runs; the neighbour rule never fuses bands across
  an absorption gap, so each run of at least :data:`MIN_SEGMENT` bands is super-resolved as its own cube.
- **Fill**: before the network, every invalid pixel takes the value of its nearest valid pixel (per band), so the
  network sees no step at a no-data edge (zero-fill makes CoarSR ring around it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dualsr_deploy.errors import DataError, InputError

MIN_SEGMENT = 5  # CoarSR fuses each band with its neighbours two apart on either side


@dataclass(frozen=True)
class BadBandSpec:
    """``--bad-bands``: 0-based band indices and ranges (``0-4,103``) and wavelength ranges in nm
    (``1340-1450nm``), comma-separated."""

    indices: tuple[tuple[int, int], ...] = ()  # inclusive ranges
    wavelengths: tuple[tuple[float, float], ...] = ()  # inclusive, nm
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> BadBandSpec:
        indices: list[tuple[int, int]] = []
        wavelengths: list[tuple[float, float]] = []
        for part in (p.strip() for p in text.split(",")):
            band = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            wave = re.fullmatch(r"(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\s*nm", part)
            if band is not None:
                low = int(band.group(1))
                high = int(band.group(2)) if band.group(2) else low
                if high < low:
                    raise InputError(f"--bad-bands {text!r}: range {part!r} runs backwards")
                indices.append((low, high))
            elif wave is not None:
                low_nm, high_nm = float(wave.group(1)), float(wave.group(2))
                if high_nm < low_nm:
                    raise InputError(f"--bad-bands {text!r}: range {part!r} runs backwards")
                wavelengths.append((low_nm, high_nm))
            else:
                raise InputError(
                    f"--bad-bands {text!r}: cannot read {part!r}; give 0-based band indices or ranges (0-4,103) "
                    "and/or wavelength ranges in nm (1340-1450nm), comma-separated"
                )
        return cls(tuple(indices), tuple(wavelengths), text)

    def resolve(self, bands: int, wavelengths: Sequence[float] | None, source: str) -> set[int]:
        """The band indices this spec names in a ``bands``-band scene."""
        found: set[int] = set()
        for low, high in self.indices:
            if high >= bands:
                raise DataError(
                    f"{source}: --bad-bands {self.text!r} names band {high}, the scene has {bands} (0-based)"
                )
            found.update(range(low, high + 1))
        if self.wavelengths:
            if wavelengths is None:
                raise DataError(
                    f"{source}: --bad-bands {self.text!r} gives wavelengths, and the scene declares none; give band "
                    "indices instead"
                )
            for low_nm, high_nm in self.wavelengths:
                found.update(i for i, w in enumerate(wavelengths) if low_nm <= w <= high_nm)
        return found


@dataclass(frozen=True)
class Masking:
    """What marks values invalid and bands bad beyond what a file declares (``--nodata``, ``--bad-bands``)."""

    nodata: tuple[float, ...] = ()
    bad_bands: BadBandSpec | None = None
    product_masks: bool = False  # add the flags of a product's mask file (EMIT L2A MASK beside a granule)


@dataclass(frozen=True)
class Validity:
    """``valid``: ``(H, W)`` bool, pixels valid in every good band. ``good``: ``(C,)`` bool."""

    valid: np.ndarray
    good: np.ndarray

    @property
    def bad_bands(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(~self.good))

    @property
    def complete(self) -> bool:
        return bool(self.valid.all() and self.good.all())


def representable(value: float, dtype: np.dtype) -> bool:
    """Whether ``dtype`` can hold ``value`` exactly (a no-data value of −9999 cannot be a uint16's)."""
    if dtype.kind not in "ui":
        return True
    info = np.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


def invalid_values(raw: np.ndarray, nodata: Sequence[float]) -> np.ndarray:
    """``(C, H, W)`` bool: non-finite values and values equal to a no-data value (those the dtype can hold)."""
    invalid = ~np.isfinite(raw) if raw.dtype.kind in "fc" else np.zeros(raw.shape, dtype=bool)
    for value in nodata:
        if representable(value, raw.dtype):
            invalid |= raw == np.asarray(value).astype(raw.dtype)
    return invalid


def find_validity(raw: np.ndarray, nodata: Sequence[float] | np.ndarray, bad: set[int], source: str) -> Validity:
    """The validity of a whole scene ``raw (C, H, W)``: bands in ``bad`` and bands with no valid value are bad; a
    pixel is invalid where any good band is. ``nodata``: the no-data values, or the invalid values themselves
    ``(C, H, W)`` bool. A scene with no good band or no valid pixel is refused."""
    if isinstance(nodata, np.ndarray) and nodata.dtype == bool:
        invalid = nodata
    else:
        invalid = invalid_values(raw, [float(v) for v in nodata])
    good = np.ones(raw.shape[0], dtype=bool)
    good[sorted(bad)] = False
    good &= ~invalid.reshape(raw.shape[0], -1).all(axis=1)
    if not good.any():
        raise DataError(f"{source}: no band holds a valid value (all are bad or no-data)")
    valid = np.asarray(~invalid[good].any(axis=0))
    if not valid.any():
        raise DataError(f"{source}: no pixel is valid in every good band (no-data everywhere)")
    return Validity(valid, good)


def segments(good: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs ``[start, stop)`` of good bands."""
    runs: list[tuple[int, int]] = []
    start = None
    for index, ok in enumerate([*good.tolist(), False]):
        if ok and start is None:
            start = index
        elif not ok and start is not None:
            runs.append((start, index))
            start = None
    return runs


def fill_invalid(cube: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``cube (C, H, W)`` with every invalid pixel given its nearest valid pixel's values (Euclidean distance; ties
    as SciPy's distance transform breaks them). ``valid`` must hold at least one True."""
    if valid.all():
        return cube
    from scipy.ndimage import distance_transform_edt

    rows, cols = distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return np.ascontiguousarray(cube[:, rows, cols])


def nearest_up(array: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upsampling of the last two axes by an integer ``scale`` (each LR pixel → s×s)."""
    return np.repeat(np.repeat(array, scale, axis=-2), scale, axis=-1)


__all__ = [
    "MIN_SEGMENT",
    "BadBandSpec",
    "Masking",
    "Validity",
    "fill_invalid",
    "find_validity",
    "invalid_values",
    "nearest_up",
    "representable",
    "segments",
]
