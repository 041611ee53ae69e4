"""What a file says about itself, converted and checked: numbers that are numbers, per-band lists as long as the
cube has bands, indices inside it, factors that can be divided by. Every helper raises a :class:`DataError` naming
the file and the key, so one bad value is that scene's failure, never the run's."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from dualsr_deploy.errors import DataError

MAX_LIST = 100_000  # values a per-band metadata array may declare (no sensor has more bands)


def number(value: Any, key: str, source: object, *, finite: bool = True) -> float:
    """``value`` as a float (a number, or text that is one); NaN or ±inf refused when ``finite``."""
    try:
        result = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise DataError(f"{source}: {key} {_shown(value)} is not a number") from None
    if finite and not math.isfinite(result):
        raise DataError(f"{source}: {key} is {result}; a finite number is needed")
    return result


def numbers(
    values: Iterable[Any] | Any, key: str, source: object, *, count: int | None = None, finite: bool = True
) -> tuple[float, ...]:
    """Every value of a list as a float (see :func:`number`); ``count``: the length it must have."""
    items = list(np.ravel(values)) if isinstance(values, np.ndarray) else _items(values)
    if count is not None and len(items) != count:
        raise DataError(f"{source}: {key} has {len(items)} values, the cube {count} bands")
    found = []
    for index, item in enumerate(items):
        try:
            found.append(number(item, key, source, finite=finite))
        except DataError:
            raise DataError(f"{source}: {key} value {index + 1} {_shown(item)} is not a finite number") from None
    return tuple(found)


def positive_factor(value: Any, key: str, source: object) -> float:
    """A scale factor to divide by: finite and > 0."""
    factor = number(value, key, source)
    if factor <= 0:
        raise DataError(f"{source}: {key} is {factor:g}; a scale factor must be positive")
    return factor


def band_indices(indices: Iterable[int], count: int, key: str, source: object) -> set[int]:
    """0-based band indices, each inside a ``count``-band cube."""
    found = set()
    for index in indices:
        value = int(index)
        if not 0 <= value < count:
            raise DataError(f"{source}: {key} names band {value}, the cube has bands 0..{count - 1}")
        found.add(value)
    return found


def flags(values: Iterable[Any] | Any, key: str, source: object, count: int) -> set[int]:
    """The bands a per-band 0/1 list (ENVI ``bbl``, EMIT ``good_wavelengths``) marks 0: bad."""
    return {index for index, flag in enumerate(numbers(values, key, source, count=count)) if flag == 0}


def small_array(dataset: Any, key: str, source: object, *, limit: int = MAX_LIST) -> np.ndarray:
    """An HDF5/NetCDF metadata dataset read whole, after checking its declared size (a file declaring 10⁹
    wavelengths would otherwise be allocated before anything could look at it)."""
    size = int(np.prod(dataset.shape)) if dataset.shape is not None else 0
    if size > limit:
        raise DataError(f"{source}: {key} declares {size} values (more than {limit}); not a band list")
    return np.ravel(np.asarray(dataset[()]))


def check_band_metadata(
    source: object,
    bands: int,
    *,
    wavelengths: Sequence[float] | None,
    fwhm: Sequence[float] | None,
    band_names: Sequence[str] | None,
    gains: Sequence[float] | None,
    offsets: Sequence[float] | None,
    bad: Iterable[int],
    scale: float | None,
) -> None:
    """Per-band lists as long as the cube has bands and finite (a 0 wavelength or FWHM is left alone: producers mark
    unused or unknown channels so), gains non-zero, bad bands inside the cube, a declared scale factor positive."""
    for key, values in (("wavelengths", wavelengths), ("fwhm", fwhm), ("gains", gains), ("offsets", offsets)):
        if values is None:
            continue
        if len(values) != bands:
            raise DataError(f"{source}: {key} has {len(values)} values, the cube {bands} bands")
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{source}: {key} holds a value that is not finite (NaN or inf)")
    if gains is not None and any(g == 0 for g in gains):
        raise DataError(f"{source}: a band gain of 0 would erase the band; the gains are not usable")
    if band_names is not None and len(band_names) != bands:
        raise DataError(f"{source}: band names has {len(band_names)} values, the cube {bands} bands")
    band_indices(bad, bands, "its bad-band list", source)
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise DataError(f"{source}: scale factor {scale}; it must be a positive finite number")


def _items(values: Any) -> list[Any]:
    if isinstance(values, str | bytes):
        return [values]
    try:
        return list(values)
    except TypeError:
        return [values]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = [
    "MAX_LIST",
    "band_indices",
    "check_band_metadata",
    "flags",
    "number",
    "numbers",
    "positive_factor",
    "small_array",
]
