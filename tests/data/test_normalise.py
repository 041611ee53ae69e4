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
