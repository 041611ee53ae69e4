"""From a file's units to [0, 1]: which factor to divide by, and the record of it that lets results go back.

Rules (``Normalisation.rule``):

- ``auto`` (default): a scale factor the file declares (ENVI ``reflectance scale factor``, GeoTIFF band scales)
  is used; otherwise integers from a format that uses their full range (CAVE's 16-bit PNGs) divide by their
  dtype's maximum (``uint16`` → 65535), other integers (sensor DN, reflectance ×10⁴) by the scene's maximum over
  its valid pixels and good bands; floats already within [0, 1] are kept; other floats follow ``float_rule``
  (``max`` unless told otherwise).
- ``dtype``: divide by the dtype's maximum (integers only).
- ``max``: divide by the scene's maximum.
- ``percentile``: divide by the scene's ``percentile``-th percentile (robust to hot pixels); values above clip to 1.
- ``fixed``: divide by ``factor`` (e.g. 10000 for reflectance ×10⁴ products); values above clip to 1.
- ``none``: keep the values (they must already lie in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from dualsr_deploy.errors import DataError

BLOCK = 1 << 22  # values divided in float64 at a time by Normalisation.apply (32 MiB)
FINITE_ADVICE = "fill or mask them before super-resolving"
RULES = ("auto", "dtype", "max", "percentile", "fixed", "none")


@dataclass(frozen=True)
class Normalisation:
    rule: str = "auto"
    float_rule: str = "max"
    percentile: float = 99.9
    factor: float | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise DataError(f"unknown normalisation rule {self.rule!r}; choose one of {', '.join(RULES)}")
        if self.float_rule not in ("max", "percentile", "fixed"):
            raise DataError(f"float_rule must be max, percentile or fixed, not {self.float_rule!r}")
        uses_fixed = self.rule == "fixed" or (self.rule == "auto" and self.float_rule == "fixed")
        if uses_fixed and (self.factor is None or not self.factor > 0):
            raise DataError("the 'fixed' normalisation needs a positive factor (e.g. --normalise fixed:10000)")
        if not 0 < self.percentile <= 100:
            raise DataError(f"percentile must be in (0, 100], got {self.percentile}")

    @classmethod
    def parse(cls, text: str) -> Normalisation:
        """``auto``, ``dtype``, ``max``, ``none``, ``percentile[:P]``, ``fixed:F`` (the CLI's ``--normalise``)."""
        name, _, value = text.partition(":")
        try:
            if name == "percentile":
                return cls(rule=name, percentile=float(value) if value else 99.9)
            if name == "fixed":
                return cls(rule=name, factor=float(value) if value else None)
        except ValueError:
            raise DataError(f"cannot read the number in --normalise {text!r}") from None
        if value:
            raise DataError(f"--normalise {name} takes no value (got {text!r})")
        return cls(rule=name)

    def resolve(
        self,
        dtype: np.dtype,
        data: Callable[[], np.ndarray],
        source: str,
        *,
        declared: float | None = None,
        full_range: bool = False,
    ) -> tuple[str, float]:
        """The rule actually applied and the factor to divide by; ``data()`` gives the scene's valid values if
        needed. ``declared``: the factor the file declares (divide by it); ``full_range``: integers of this format
        use their dtype's whole range."""
        rule = self.rule
        if rule == "auto":
            if declared is not None:
                return f"declared:{declared:g}", float(declared)
            if dtype.kind in "ui":
                rule = "dtype" if full_range else "max"
            elif dtype.kind == "b":
                return "none", 1.0
            else:
                values = check_finite(data(), source)
                low, high = float(np.min(values)), float(np.max(values))
                rule = "none" if low >= 0.0 and high <= 1.0 else self.float_rule
        if rule == "none":
            return rule, 1.0
        if rule == "dtype":
            if dtype.kind not in "ui":
                raise DataError(f"{source}: the 'dtype' rule needs integer data, this is {dtype}")
            return rule, float(np.iinfo(dtype).max)
        if rule == "fixed":
            assert self.factor is not None  # checked in __post_init__
            return rule, float(self.factor)
        values = check_finite(data(), source)
        factor = float(np.max(values)) if rule == "max" else float(np.percentile(values, self.percentile))
        if not factor > 0:
            raise DataError(f"{source}: cannot normalise by the {rule} rule, the scene's {rule} is {factor}")
        return (rule if rule == "max" else f"percentile:{self.percentile:g}"), factor

    @staticmethod
    def apply(
        raw: np.ndarray,
        factor: float,
        source: str,
        *,
        blank: np.ndarray | None = None,
        blank_bands: Iterable[int] = (),
    ) -> tuple[np.ndarray, int]:
        """``raw / factor`` as float32 with values above 1 clipped to 1 (hot pixels above the rule's factor);
        values below 0 are kept (negative radiances and reflectances of good bands are physical: L1B noise, dark
        targets). ``blank`` ``(h, w)`` pixels and ``blank_bands`` are 0, whatever their raw values (NaN fills
        included). Returns the cube and how many values were clipped. Converted a few bands at a time: the float64
        division never holds more than :data:`BLOCK` values."""
        cube = np.empty(raw.shape, np.float32)
        blanked = sorted(set(blank_bands))
        step = max(1, BLOCK // max(raw[0].size, 1))
        outside = not_finite = 0
        for start in range(0, raw.shape[0], step):
            part = cube[start : start + step]
            block = raw[start : start + step]
            with np.errstate(over="ignore", invalid="ignore"):  # no-data fills blanked below may not fit float32
                if factor == 1.0:
                    part[...] = block
                else:  # in float64, rounded once into the float32 result: no float64 block to map and fault in
                    np.divide(block, np.float64(factor), out=part, dtype=np.float64, casting="same_kind")
            if blank is not None:
                part[:, blank] = 0
            for band in blanked:
                if start <= band < start + part.shape[0]:
                    part[band - start] = 0
            not_finite += int(part.size - np.count_nonzero(np.isfinite(part)))
            above = int(np.count_nonzero(part > 1))
            if above:
                np.minimum(part, 1.0, out=part)
            outside += above
        if not_finite:
            raise DataError(f"{source}: {not_finite} values are NaN or infinite; {FINITE_ADVICE}")
        return cube, outside


def band_floor(minima: np.ndarray, factor: float) -> tuple[float, ...] | None:
    """Each band's lower clip bound in normalised units: its minimum over the valid pixels (``minima``, in
    physical units) over ``factor`` where that is below 0, else 0; None when no band goes below 0 (the clip is
    then [0, 1] everywhere, as the published code clips)."""
    floors = np.minimum(np.asarray(minima, dtype=np.float64) / factor, 0.0).astype(np.float32)
    return tuple(float(v) for v in floors) if (floors < 0).any() else None


def check_finite(values: np.ndarray, source: str) -> np.ndarray:
    """``values`` unchanged, or a :class:`DataError` naming ``source`` if any value is NaN or infinite."""
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise DataError(f"{source}: {bad} values are NaN or infinite; {FINITE_ADVICE}")
    return values
