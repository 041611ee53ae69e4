from __future__ import annotations

import pytest

from dualsr_deploy.archs.neighbours import band_neighbours, check_rule, neighbour_table
from dualsr_deploy.errors import InputError, NeighbourRuleError


def test_paper_rule_matches_design_for_eight_bands() -> None:
    expected = {
        0: ((3, 1), (2, 4)),
        1: ((3, 0), (2, 4)),
        2: ((0, 1), (3, 4)),
        5: ((3, 4), (6, 7)),
        6: ((3, 5), (7, 4)),  # band C−2
        7: ((4, 6), (5, 3)),  # band C−1
    }
    for band, pairs in expected.items():
        assert band_neighbours(band, 8, "paper") == pairs


def test_reference_rule_uses_band_zero_neighbours_everywhere() -> None:
    assert {band_neighbours(i, 31, "reference") for i in range(31)} == {((3, 1), (2, 4))}


@pytest.mark.parametrize("bands", [5, 6, 7, 31, 102, 224])
def test_paper_neighbours_are_other_bands_in_range(bands: int) -> None:
    for i in range(bands):
        (l0, l1), (r0, r1) = band_neighbours(i, bands, "paper")
        assert all(0 <= j < bands and j != i for j in (l0, l1, r0, r1))


def test_table_rows_are_band_then_neighbours() -> None:
    table = neighbour_table(8, "paper")
    assert table.shape == (8, 5)
    assert table[6].tolist() == [6, 3, 5, 7, 4]


def test_fewer_than_five_bands_is_refused() -> None:
    with pytest.raises(InputError, match="at least 5"):
        band_neighbours(0, 4, "paper")


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(NeighbourRuleError, match="paper, reference"):
        check_rule("nearest")
