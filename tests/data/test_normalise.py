"""Normalisation rules: which factor, recorded so values can go back."""

from __future__ import annotations

import numpy as np
import pytest

from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.errors import DataError


def resolve(rule: Normalisation, values: np.ndarray) -> tuple[str, float]:
    return rule.resolve(values.dtype, lambda: values, "test")


def test_auto_rules() -> None:
    # integers: their own maximum (sensor DN), or the dtype's for formats that use its whole range (CAVE)
    assert resolve(Normalisation(), np.array([1, 2], np.uint16)) == ("max", 2.0)
    full = Normalisation().resolve(np.dtype(np.uint16), lambda: np.array([1, 2], np.uint16), "t", full_range=True)
    assert full == ("dtype", 65535.0)
    assert Normalisation().resolve(np.dtype(np.uint8), lambda: np.array([1]), "t", full_range=True) == ("dtype", 255.0)
    declared = Normalisation().resolve(np.dtype(np.int16), lambda: np.array([1]), "t", declared=10000.0)
    assert declared == ("declared:10000", 10000.0)
    assert resolve(Normalisation(), np.array([0.0, 0.7])) == ("none", 1.0)
    assert resolve(Normalisation(), np.array([0.0, 2500.0])) == ("max", 2500.0)
    assert resolve(Normalisation(float_rule="fixed", factor=1e4), np.array([0.0, 2500.0])) == ("fixed", 1e4)


def test_percentile_clips_and_counts() -> None:
    values = np.arange(1001, dtype=np.float64)
    rule, factor = resolve(Normalisation("percentile", percentile=90), values)
    assert (rule, factor) == ("percentile:90", 900.0)
    cube, clipped = Normalisation.apply(values, factor, "test")
    assert clipped == 100
    assert cube.max() == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max", Normalisation("max")),
        ("percentile:99", Normalisation("percentile", percentile=99)),
        ("fixed:10000", Normalisation("fixed", factor=10000.0)),
    ],
)
def test_parse(text: str, expected: Normalisation) -> None:
    assert Normalisation.parse(text) == expected


@pytest.mark.parametrize("text", ["fixed", "fixed:abc", "bogus", "max:3", "percentile:0"])
def test_parse_errors(text: str) -> None:
    with pytest.raises(DataError):
        Normalisation.parse(text)


def test_dtype_rule_needs_integers() -> None:
    with pytest.raises(DataError, match="integer"):
        resolve(Normalisation("dtype"), np.array([0.5]))


@pytest.mark.filterwarnings("error")
def test_blanked_pixels_and_bands_are_zero_whatever_they_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Invalid pixels and bad bands are 0 after normalising (NaN and fills too large for float32 included, without a
    warning), the rest is the float64 quotient rounded to float32 as before, a few bands at a time."""
    from dualsr_deploy.data import normalise

    monkeypatch.setattr(normalise, "BLOCK", 2 * 16)  # two bands a block: the blocks' edges are crossed
    rng = np.random.default_rng(3)
    raw = (rng.random((5, 4, 4)) * 0.5).astype(np.float32)
    raw[:, 0, 0] = np.nan
    raw[:, 1, 2] = -3.4e38
    raw[3] = np.inf
    blank = np.zeros((4, 4), dtype=bool)
    blank[0, 0] = blank[1, 2] = True
    cube, clipped = Normalisation.apply(raw, 0.3, "x", blank=blank, blank_bands=[3])
    with np.errstate(over="ignore", invalid="ignore"):
        expected = (raw.astype(np.float64) / 0.3).astype(np.float32)
    keep = ~blank
    for band in (0, 1, 2, 4):
        np.testing.assert_array_equal(cube[band][keep], np.minimum(expected[band][keep], 1.0))
    assert (cube[3] == 0).all()
    assert (cube[:, ~keep] == 0).all()
    assert clipped == int((expected[[0, 1, 2, 4]][:, keep] > 1).sum())
    with pytest.raises(DataError, match="values are NaN or infinite"):
        Normalisation.apply(raw, 0.3, "x", blank=blank)  # band 3 left in


@pytest.mark.parametrize(("dtype", "factor"), [("int16", 3e4), ("float32", 0.340704), ("float32", 1.0)])
def test_raw_converts_a_few_bands_at_a_time_as_the_whole_cube(
    dtype: str, factor: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scene.raw in blocks of bands (and a float product already in its units copied once) gives what the float64
    conversion of the whole cube gave: integers rounded and clipped, floats rounded once."""
    from dualsr_deploy.data import scene as scene_module
    from dualsr_deploy.data.scene import Scene, SceneMeta

    monkeypatch.setattr(scene_module, "CONVERT_BLOCK", 3 * 20)  # three bands a block
    rng = np.random.default_rng(4)
    cube = (rng.random((7, 4, 5)) * 1.2 - 0.1).astype(np.float32)
    meta = SceneMeta(source="x", format="hdf5", dtype=dtype, scale_factor=factor)
    values = cube.astype(np.float64) * factor
    if dtype == "int16":
        values = np.clip(np.rint(values), -32768, 32767)
    np.testing.assert_array_equal(Scene("x", cube, meta).raw(), values.astype(dtype))
