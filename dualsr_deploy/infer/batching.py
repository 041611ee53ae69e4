"""Tile batching: LR windows (each a tile's core plus its halo) stacked into batches, run through a backend, and
their cores pasted into the output. :func:`run_batches` is the one batcher: inference runs it through
:class:`TileRunner` (tile size and batch size chosen per backend and memory budget), ``dualsr bench`` directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dualsr_deploy.backends import Backend
from dualsr_deploy.infer.options import AUTO_TILE, TILE_SHARE, Event, InferOptions
from dualsr_deploy.infer.pool import BackendPool
from dualsr_deploy.infer.tiling import Tile, TileGrid, paste, receptive_radius


@dataclass(frozen=True)
class TileJob:
    """One tile to run: its window in ``source`` (a whole LR cube ``(C, h, w)`` or a row strip of one) starts at
    (``top``, ``tile.left``) and is ``window`` (h, w) large; its core lands in ``out`` ``(C, H, W)``, whose first
    row is scene HR row ``row_offset``."""

    source: torch.Tensor
    top: int
    tile: Tile
    window: tuple[int, int]
    out: torch.Tensor
    row_offset: int = 0


def grid_jobs(cube: torch.Tensor, grid: TileGrid, out: torch.Tensor) -> list[TileJob]:
    """A job for every tile of ``grid`` over a whole LR ``cube``."""
    return [TileJob(cube, tile.top, tile, (grid.window_h, grid.window_w), out) for tile in grid]


def run_batches(
    backend: Backend, jobs: list[TileJob], batch: int, on_batch: Callable[[int], None] | None = None
) -> None:
    """Run ``jobs`` (same band count and window shape) through ``backend`` ``batch`` at a time and paste each
    core; ``on_batch(count)`` after each batch. A last batch of fewer tiles is padded with zero windows: every call
    has ``batch`` tiles, so a tile's result does not depend on how many tiles came with it."""
    scale = backend.capabilities.scale
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        windows = [
            job.source[:, job.top : job.top + job.window[0], job.tile.left : job.tile.left + job.window[1]]
            for job in chunk
        ]
        windows += [torch.zeros_like(windows[0])] * (batch - len(chunk))
        sr = backend.run(torch.stack(windows))
        for job, one in zip(chunk, sr[: len(chunk)], strict=True):
            paste(job.out, job.tile, one, scale, row_offset=job.row_offset)
        if on_batch is not None:
            on_batch(len(chunk))


class TileRunner:
    """Coarse SR of LR cubes through the pool's backends, tile by tile, batched (the executors pass one scene)."""

    def __init__(self, pool: BackendPool, options: InferOptions, report: Callable[[Event], None]) -> None:
        self.pool = pool
        self.options = options
        self.report = report

    def window_bytes_per_pixel(self, scale: int, bands: int) -> int:
        """Bytes a backend call holds per LR window pixel and band: measured per backend × precision × scale on a
        CPU, scaled to this model's size; estimated elsewhere (:mod:`dualsr_deploy.infer.memory`)."""
        from dualsr_deploy.infer.memory import window_bytes

        spec = self.options.backend
        return window_bytes(
            self.pool.model(scale).core,
            backend=spec.backend,
            precision=spec.precision,
            device_type=spec.device.split(":")[0].lower(),
            whole_activations=spec.whole_activations,
            bands=bands,
        )

    def call_share(self, scene: tuple[int, int, int] | None = None) -> int:
        """Bytes one backend call may hold: :data:`TILE_SHARE` of the memory budget, or for a scene held in memory
        (``scene``: its shape), what the budget leaves beside two of its working sets (it, and one read or written
        meanwhile), when that is more. A small scene's call need not be cut to 40 %: a 100 × 100 × 189 scene ran
        through OpenVINO fp32 as 4 tiles in 9.3 s under the 40 %, as 1 in 3.5 s, both within the budget."""
        share = int(self.options.budget * TILE_SHARE)
        if scene is not None:
            share = max(share, self.options.budget - 2 * self.options.working_bytes(scene))
        return share

    def auto_tile(self, scale: int, bands: int, scene: tuple[int, int, int] | None = None) -> int:
        """The largest core up to :data:`AUTO_TILE` whose window's call fits :meth:`call_share` (at least 8); a
        scene held in memory whose whole window fits is one tile. Large tiles pay least for their halo: on the 2-core
        CPU a CAVE scene at ×4 ran 2.4× faster with 128 than with 64 (``dualsr bench``)."""
        halo = receptive_radius(self.pool.model(scale).config)
        room = self.call_share(scene) // max(bands * self.window_bytes_per_pixel(scale, bands), 1)
        if scene is not None and scene[1] * scene[2] <= room and max(scene[1:]) <= AUTO_TILE:
            return max(scene[1:])
        side = math.isqrt(room)
        return max(8, min(AUTO_TILE, side - 2 * halo))

    def tile_for(self, scale: int, bands: int, scene: tuple[int, int, int] | None = None) -> int:
        """``--tile``, or automatically: :meth:`auto_tile`, no larger than a TensorRT plan's profile takes."""
        if self.options.tile is not None:
            return self.options.tile
        tile = self.auto_tile(scale, bands, scene)
        caps = self.pool.backend(scale, bands).capabilities
        if caps.max_shape is not None:
            halo = receptive_radius(self.pool.model(scale).config)
            return max(8, min(tile, min(caps.max_shape[1], caps.max_shape[2]) - 2 * halo))
        return tile

    def grid(
        self,
        scale: int,
        height: int,
        width: int,
        bands: int,
        *,
        rows: int | None = None,
        scene_bands: int | None = None,
    ) -> TileGrid:
        """The tile grid of an LR scene: square cores of :meth:`tile_for`, or (a streamed scene's) cores of at most
        ``rows`` rows, as wide as :meth:`tile_for`. ``scene_bands``: the bands of the scene held in memory, when the
        call runs fewer (a band segment)."""
        scene = None if rows is not None else (scene_bands or bands, height, width)
        return self._grid(scale, height, width, bands, rows, self.tile_for(scale, bands, scene))

    def count(self, shape: tuple[int, int, int], streamed: bool) -> int:
        """The tiles a scene of ``shape`` runs (both models for ``dual``), as :meth:`grid` lays them; for planning,
        before any backend is open (a TensorRT profile's limit is not known yet)."""
        c, h, w = shape
        total = 0
        for scale in self.options.scales:
            rows = self.options.strip_rows(shape, scale) if streamed else None
            tile = self.options.tile or self.auto_tile(scale, c, None if streamed else shape)
            total += len(self._grid(scale, h, w, c, rows, tile))
        return total

    def _grid(self, scale: int, height: int, width: int, bands: int, rows: int | None, tile: int) -> TileGrid:
        halo = receptive_radius(self.pool.model(scale).config)
        if rows is None or rows >= tile:
            return TileGrid(height, width, tile, halo)
        window_w = min(tile + 2 * halo, width)
        room = int(self.options.budget * TILE_SHARE) // max(
            bands * window_w * self.window_bytes_per_pixel(scale, bands), 1
        )
        rows = max(8, min(rows, room - 2 * halo))
        return TileGrid(height, width, rows, halo, tile_width=tile)

    def batch_size(self, scale: int, bands: int, window: tuple[int, int]) -> int:
        """``--batch`` (or :meth:`InferOptions.batch_on` the backend's device), capped by a plan's profile and by a
        :data:`TILE_SHARE` of the memory budget (per tile: :meth:`window_bytes_per_pixel` × bands × window).
        """
        backend = self.pool.backend(scale, bands)
        caps = backend.capabilities
        wanted = self.options.batch_on(str(backend.device))
        limit = caps.max_shape[0] if caps.max_shape is not None else wanted
        per_tile = bands * window[0] * window[1] * self.window_bytes_per_pixel(scale, bands)
        return max(1, min(wanted, limit, int(self.options.budget * TILE_SHARE) // per_tile))

    def run_tiles(self, scale: int, jobs: list[TileJob], name: str, *, count: bool = True) -> None:
        """Run every job's window through the ×``scale`` backend, a batch at a time, and paste the cores; ``count``:
        report them as ``tiles`` progress (a scene's further band segments run the same tiles again, uncounted)."""
        if not jobs:
            return
        bands = jobs[0].source.shape[0]
        backend = self.pool.backend(scale, bands)
        size = self.batch_size(scale, bands, jobs[0].window)
        run_batches(backend, jobs, size, (lambda n: self.report(Event("tiles", name, count=n))) if count else None)

    def coarse(
        self,
        scale: int,
        cubes: list[torch.Tensor],
        names: list[str],
        *,
        count: bool = True,
        scene_bands: int | None = None,
    ) -> list[torch.Tensor]:
        """Whole-scene coarse SR ``(C, s·h, s·w)`` of same-window-shape LR cubes, tiles batched together (``count``:
        see :meth:`run_tiles`; ``scene_bands``: see :meth:`grid`)."""
        device = self.pool.backend(scale, cubes[0].shape[0]).device
        outs: list[torch.Tensor] = []
        jobs: list[TileJob] = []
        for cube in cubes:
            c, h, w = cube.shape
            out = torch.empty((c, scale * h, scale * w), device=device)
            outs.append(out)
            jobs += grid_jobs(cube, self.grid(scale, h, w, c, scene_bands=scene_bands), out)
        self.run_tiles(scale, jobs, names[0] if len(names) == 1 else f"{len(names)} scenes", count=count)
        return outs


__all__ = ["TileJob", "TileRunner", "grid_jobs", "run_batches"]
