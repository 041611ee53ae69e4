"""Tiles of an LR scene that reproduce the whole-image result exactly (DESIGN.md, "Deployment graphs").

Every tile is a window of the same size (so tiles batch together) around a *core*; the cores partition the
scene, and each output pixel is taken from the tile whose core holds it. A window reaches ``halo`` LR pixels past
its core (or stops at the scene's border, where the whole-image computation has the same zero padding), and
``halo`` ≥ the network's receptive radius makes the core's output identical to the whole image's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from dualsr_deploy.archs.coarsr import CoarSRConfig
from dualsr_deploy.errors import InputError


def receptive_radius(config: CoarSRConfig) -> int:
    """LR pixels on each side that can influence one output pixel (rounded up), for the folded CoarSR.

    Body: the head conv, two rounds of ``4·n_blocks + 2`` 3×3 convs (residual blocks, three-unit), the conv after
    the reduction; tail: one 3×3 conv per ×2 (×3) upsampling step and a last one at HR, together < 2 LR pixels.
    The bicubic skip reaches 2 LR pixels.
    """
    body = 1 + 2 * (4 * config.n_blocks + 2) + 1
    tail = sum(1 / 2**k for k in range(max(1, config.scale.bit_length() - 1) + 1))
    return max(body + math.ceil(tail), 2)


@dataclass(frozen=True)
class Tile:
    """One window of the LR scene and the part of it (its core) whose output is kept."""

    top: int
    left: int
    core_top: int
    core_left: int
    core_height: int
    core_width: int


@dataclass(frozen=True)
class TileGrid:
    """Same-size windows ``window_h × window_w`` over an ``height × width`` LR scene with cores of ``tile`` rows and
    ``tile_width`` columns (``tile`` when not given: square cores)."""

    height: int
    width: int
    tile: int
    halo: int
    tile_width: int | None = None

    def __post_init__(self) -> None:
        if self.tile < 1 or self.halo < 0 or (self.tile_width is not None and self.tile_width < 1):
            raise InputError(f"tile must be ≥ 1 and halo ≥ 0; got tile {self.tile}, halo {self.halo}")

    @property
    def core_w(self) -> int:
        return self.tile_width or self.tile

    @property
    def window_h(self) -> int:
        return min(self.tile + 2 * self.halo, self.height)

    @property
    def window_w(self) -> int:
        return min(self.core_w + 2 * self.halo, self.width)

    @staticmethod
    def _spans(size: int, tile: int, halo: int, window: int) -> list[tuple[int, int, int]]:
        spans = []
        for start in range(0, size, tile):
            end = min(start + tile, size)
            top = min(max(start - halo, 0), size - window)
            spans.append((top, start, end - start))
        return spans

    def __iter__(self) -> Iterator[Tile]:
        rows = self._spans(self.height, self.tile, self.halo, self.window_h)
        cols = self._spans(self.width, self.core_w, self.halo, self.window_w)
        for top, core_top, core_h in rows:
            for left, core_left, core_w in cols:
                yield Tile(top, left, core_top, core_left, core_h, core_w)

    def __len__(self) -> int:
        return math.ceil(self.height / self.tile) * math.ceil(self.width / self.core_w)

    def rows(self) -> list[list[Tile]]:
        """The tiles by row of windows (all tiles of a row share ``top``): what a row strip of the scene feeds."""
        width = math.ceil(self.width / self.core_w)
        tiles = list(self)
        return [tiles[i : i + width] for i in range(0, len(tiles), width)]


def paste(out: torch.Tensor, tile: Tile, sr: torch.Tensor, scale: int, *, row_offset: int = 0) -> None:
    """Copy the core of one tile's SR ``(C, s·window_h, s·window_w)`` into ``out`` (rows shifted by
    ``row_offset`` HR rows when ``out`` holds only a strip of the scene)."""
    s = scale
    r0 = s * (tile.core_top - tile.top)
    c0 = s * (tile.core_left - tile.left)
    h, w = s * tile.core_height, s * tile.core_width
    top = s * tile.core_top - row_offset
    out[:, top : top + h, s * tile.core_left : s * tile.core_left + w] = sr[:, r0 : r0 + h, c0 : c0 + w]
