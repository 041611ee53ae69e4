"""Which neighbouring bands CoarSR fuses with each band.

Two rules exist (DESIGN.md, "Neighbour rules"):

- ``paper``: every band uses its own neighbours, as the paper describes;
- ``reference``: every band uses the neighbours of band 0, ``l = (3, 1)``, ``r = (2, 4)``, which is what the
  published train and test loops actually compute (and what the authors' released weights were trained with).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, get_args

import torch

from dualsr_deploy.errors import InputError, NeighbourRuleError

NeighbourRule = Literal["paper", "reference"]
NEIGHBOUR_RULES: tuple[str, ...] = get_args(NeighbourRule)
MIN_BANDS = 5


def check_rule(rule: str) -> NeighbourRule:
    """Return ``rule`` typed as a :data:`NeighbourRule`, or raise a clear error."""
    if rule not in NEIGHBOUR_RULES:
        raise NeighbourRuleError(f"unknown neighbour rule {rule!r}; choose one of {', '.join(NEIGHBOUR_RULES)}")
    return rule  # type: ignore[return-value]


def check_band_count(bands: int) -> None:
    if bands < MIN_BANDS:
        raise InputError(
            f"CoarSR needs at least {MIN_BANDS} spectral bands (each band is fused with four neighbours); "
            f"got {bands}. Multispectral images with fewer bands cannot be processed by this model."
        )


def band_neighbours(index: int, bands: int, rule: NeighbourRule) -> tuple[tuple[int, int], tuple[int, int]]:
    """Return ``((l0, l1), (r0, r1))``, the band indices fused with band ``index`` of a ``bands``-band cube."""
    check_band_count(bands)
    if not 0 <= index < bands:
        raise IndexError(f"band index {index} outside 0..{bands - 1}")
    i = index
    if rule == "reference" or i == 0:
        return (3, 1), (2, 4)
    if i == 1:
        return (3, 0), (2, 4)
    if i == bands - 2:
        return (i - 3, i - 1), (i + 1, i - 2)
    if i == bands - 1:
        return (i - 3, i - 1), (i - 2, i - 4)
    return (i - 2, i - 1), (i + 1, i + 2)


@lru_cache(maxsize=64)
def _table(bands: int, rule: NeighbourRule) -> tuple[tuple[int, ...], ...]:
    rows = []
    for i in range(bands):
        (l0, l1), (r0, r1) = band_neighbours(i, bands, rule)
        rows.append((i, l0, l1, r0, r1))
    return tuple(rows)


def neighbour_table(bands: int, rule: NeighbourRule, device: torch.device | None = None) -> torch.Tensor:
    """``(bands, 5)`` int64 table; row ``i`` is ``(i, l0, l1, r0, r1)``.

    Gathering ``lr[:, table]`` gives, per band, the five input planes of its heads in a fixed order, which is how
    the cube model and the exported graph apply the rule (a constant gather).
    """
    return torch.tensor(_table(bands, rule), dtype=torch.int64, device=device)
