"""Scenes too large to hold whole (their working set exceeds the memory budget): coarse SR in LR row strips into
on-disk intermediates, then the fine stage in two exact passes over strips (one SAM weight per scene,
:mod:`dualsr_deploy.infer.fine`), written strip by strip (HDF5 or ``.npy``)."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dualsr_deploy.data.chunked import ChunkedWriter
from dualsr_deploy.data.readers.base import SceneReader
from dualsr_deploy.data.scene import Window
from dualsr_deploy.errors import DataError
from dualsr_deploy.infer.batching import TileJob
from dualsr_deploy.infer.context import SceneContext, output_meta
from dualsr_deploy.infer.fine import backproject_streamed, sam_weight_streamed
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.options import WORK_DIR
from dualsr_deploy.infer.plan import PlannedScene

Sink = Callable[[int, torch.Tensor], None]  # (first HR row, rows (C, n, W)) → stored


class _StreamedScene:
    """One streamed scene: its reader, its device, the seconds spent per step, and its work folder."""

    def __init__(self, ctx: SceneContext, planned: PlannedScene, reader: SceneReader, work: Path) -> None:
        assert planned.entry.shape is not None
        self.ctx, self.planned, self.reader, self.work = ctx, planned, reader, work
        self.bands, self.height, self.width = planned.entry.shape
        self.device = ctx.pool.backend(ctx.options.scale, self.bands).device
        self.seconds = {"read": 0.0, "coarse": 0.0, "fine": 0.0, "write": 0.0}

    def lr_rows(self, start: int, stop: int) -> torch.Tensor:
        t = time.perf_counter()
        window = Window(start, 0, stop - start, self.width)
        scene = self.reader.load(self.ctx.options.normalise, window, self.ctx.options.masking)
        if scene.valid is not None:
            raise DataError(
                f"{self.planned.entry.path}: rows {start}-{stop} hold no-data or non-finite pixels; scenes with "
                "invalid pixels are not yet streamed (raise --memory-budget to run it in memory)"
            )
        self.seconds["read"] += time.perf_counter() - t
        return torch.from_numpy(scene.cube).to(self.device)

    def coarse_into(self, scale: int, sink: Sink, clip: bool) -> None:
        """The ×``scale`` coarse SR, one row of tiles at a time, each strip handed to ``sink``."""
        c, w = self.bands, self.width
        grid = self.ctx.runner.grid(scale, self.height, w, c)
        for row in grid.rows():
            first = row[0]
            strip = self.lr_rows(first.top, first.top + grid.window_h)
            t = time.perf_counter()
            buf = torch.empty((c, scale * first.core_height, scale * w), device=self.device)
            offset = scale * first.core_top
            window = (grid.window_h, grid.window_w)
            jobs = [TileJob(strip, 0, tile, window, buf, offset) for tile in row]
            self.ctx.runner.run_tiles(scale, jobs, self.planned.entry.name)
            self.seconds["coarse"] += time.perf_counter() - t
            sink(offset, buf.clamp(0, 1) if clip else buf)

    def intermediate(self, name: str, scale: int) -> tuple[np.memmap, Callable[[int, int], torch.Tensor]]:
        """An on-disk ×``scale`` cube filled by :meth:`coarse_into`, and a reader of its rows on the device."""
        shape = (self.bands, scale * self.height, scale * self.width)
        array = np.lib.format.open_memmap(self.work / f"{name}.npy", mode="w+", dtype=np.float32, shape=shape)
        self.coarse_into(scale, _into(array), True)

        def rows(start: int, stop: int) -> torch.Tensor:
            return torch.from_numpy(np.array(array[:, start:stop])).to(self.device)

        return array, rows

    def run(self, writer: ChunkedWriter) -> float | None:
        """Compute the scene into ``writer``; returns the fine stage's SAM weight (None for ``coarse``)."""
        options, scale = self.ctx.options, self.ctx.options.scale
        c, h, w = self.bands, self.height, self.width

        def write(first_row: int, rows: torch.Tensor) -> None:
            t = time.perf_counter()
            writer.write(first_row, rows.cpu().numpy())
            self.seconds["write"] += time.perf_counter() - t

        if options.stage == "coarse":
            self.coarse_into(scale, write, options.clip)
            return None
        _high_array, high = self.intermediate("high", scale)
        if options.stage == "dual":
            half = scale // 2
            _low_array, low = self.intermediate("low", half)
            factor, low_shape = 2, (c, half * h, half * w)
        else:
            low, factor, low_shape = self.lr_rows, scale, (c, h, w)
        t = time.perf_counter()
        row_bytes = 4 * c * low_shape[2] * factor * factor * 12
        step = max(8, min(low_shape[1], options.budget // max(row_bytes, 1)))
        weight = sam_weight_streamed(high, low, low_shape, factor, step)
        for first, rows in backproject_streamed(high, low, low_shape, factor, weight, step):
            write(first, rows.clamp(0, 1) if options.clip else rows)
        self.seconds["fine"] += time.perf_counter() - t - self.seconds["write"]
        return weight


def _into(array: np.ndarray) -> Sink:
    def sink(first_row: int, rows: torch.Tensor) -> None:
        array[:, first_row : first_row + rows.shape[1]] = rows.cpu().numpy()

    return sink


def stream_scene(ctx: SceneContext, planned: PlannedScene) -> SceneRecord:
    """One scene too large to hold, start to end (read, compute and write in strips); raises on failure."""
    options, entry, scale = ctx.options, planned.entry, ctx.options.scale
    assert entry.shape is not None
    assert planned.output is not None
    c, h, w = entry.shape
    work = planned.output.parent / WORK_DIR / hashlib.sha1(entry.name.encode()).hexdigest()[:16]
    work.mkdir(parents=True, exist_ok=True)
    with ctx.archive.open(entry) as reader:
        reader.resolve_in_strips(options.normalise, masking=options.masking)
        meta = reader.load(options.normalise, Window(0, 0, 1, w), options.masking).meta
        if meta.bad_bands:
            raise DataError(
                f"{entry.path}: bad bands {list(meta.bad_bands)}; scenes with bad bands are not yet streamed (raise "
                "--memory-budget to run it in memory)"
            )
        scene = _StreamedScene(ctx, planned, reader, work)
        out_meta = output_meta(meta, scale).replace(source=str(entry.path), format=entry.format or meta.format)
        with ChunkedWriter(planned.output, (c, scale * h, scale * w), out_meta, ctx.output_attrs()) as writer:
            weight = scene.run(writer)
            t = time.perf_counter()
            writer.commit()
            scene.seconds["write"] += time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    seconds = {k: round(v, 3) for k, v in scene.seconds.items()}
    seconds["total"] = round(sum(seconds.values()), 3)
    notes = [] if options.units == "normalised" else ["streamed: written in normalised units (float32 in [0, 1])"]
    return ctx.record(
        planned,
        "ok",
        output=str(planned.output),
        shape_out=[c, scale * h, scale * w],
        sam_weight=weight,
        seconds=seconds,
        notes=notes,
    )


__all__ = ["stream_scene"]
