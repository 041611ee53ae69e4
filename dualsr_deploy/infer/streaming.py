"""Scenes too large to hold whole (their working set exceeds the memory budget): coarse SR in LR row strips into
on-disk intermediates, then the fine stage in two exact passes over strips (one SAM weight per scene,
:mod:`dualsr_deploy.ops.fine`), written strip by strip (HDF5 or ``.npy``), in the source's units by default.

Invalid pixels and bad bands are handled as in memory (:mod:`dualsr_deploy.infer.compute`): each LR strip is read
with :data:`fill margin <fill_margin>` rows around it and filled there. A filled pixel can change a valid output only
if a valid pixel lies within the reach of the models and the fine stage's kernels, so its nearest valid pixel lies
within ``√2·reach`` of it, inside the margin: the strip's fill equals the whole scene's where it matters.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dualsr_deploy.data.formats import StripWriter, declared_factor, open_strips, write_scene
from dualsr_deploy.data.formats.reader import SceneReader, whole_notes
from dualsr_deploy.data.rawfile import RowStore
from dualsr_deploy.data.scene import Scene, SceneMeta, Window
from dualsr_deploy.data.validity import fill_invalid
from dualsr_deploy.errors import DataError
from dualsr_deploy.infer.batching import TileJob
from dualsr_deploy.infer.consistency import CONSISTENCY_ATTR, HALO, Consistency, StripConsistency
from dualsr_deploy.infer.context import SceneContext, output_meta
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.options import Event, scene_work_dir
from dualsr_deploy.infer.plan import PlannedScene, remove_outputs
from dualsr_deploy.infer.quality import qa_path, reach
from dualsr_deploy.infer.records import SceneFacts, quality, quality_counts
from dualsr_deploy.infer.reference import reference_path, upsampled
from dualsr_deploy.ops.fine import backproject_streamed, clip_range, floor_tensor, sam_weight_streamed
from dualsr_deploy.ops.imresize import imresize

Sink = Callable[[int, torch.Tensor], None]  # (first HR row, rows (C, n, W)) → stored


REFERENCE_STRIP = 64  # LR rows of the bicubic reference interpolated at a time


def write_step(budget: int, bands: int, width: int) -> int:
    """HR rows of ``bands × width`` converted and written at a time: within an eighth of the memory ``budget`` at 8
    bytes a value (their float32 copy, the converted output, the consistency figures' buffer)."""
    return max(1, budget // (8 * 8 * bands * width))


def fill_margin(radius: int) -> int:
    """LR rows read around a strip so that its fill equals the whole scene's wherever it can reach a valid output."""
    return math.ceil(math.sqrt(2) * radius) + 1


class _StreamedScene:
    """One streamed scene: its reader, its device, its band segments, the seconds spent per step, its work folder."""

    def __init__(
        self,
        ctx: SceneContext,
        planned: PlannedScene,
        reader: SceneReader,
        meta: SceneMeta,
        work: Path,
        facts: SceneFacts,
    ) -> None:
        assert planned.entry.shape is not None
        self.ctx, self.planned, self.reader, self.meta, self.work = ctx, planned, reader, meta, work
        self.bands, self.height, self.width = planned.entry.shape
        self.facts = facts  # the segments and invalid pixels, counted as the scene is read; clipped values, as written
        self.network, self.short = facts.network, facts.short
        self.network_bands = [i for a, b in self.network for i in range(a, b)]
        self.device = ctx.pool.backend(ctx.options.scale, self.network[0][1] - self.network[0][0]).device
        self.margin = fill_margin(reach(ctx.pool, ctx.options))
        self.floor = floor_tensor(meta.band_floor, self.device)
        self.seconds = {"read": 0.0, "coarse": 0.0, "fine": 0.0, "write": 0.0, "consistency": 0.0}
        self.stores: list[RowStore] = []
        self.held: tuple[int, int, Scene] | None = None  # the LR rows [first, stop) of the strip being computed
        good = np.ones(self.bands, dtype=bool)
        good[list(meta.bad_bands)] = False
        check = Consistency(good, ctx.options.scale, meta.scale_factor)
        memory = ctx.options.budget // 8  # as a write's conversion: within the scene's share of the budget
        self.consistency = StripConsistency(check, self._consistency_rows, self.height, self.width, memory)

    def _load(self, start: int, stop: int) -> Scene:
        """LR rows [start, stop): the cube, its validity and its bad bands' raw values (not window-exact metadata),
        from the strip :meth:`lr_rows` holds where it covers them (the rows written next and their consistency
        figures are that strip's), else read."""
        if self.held is not None and self.held[0] <= start and stop <= self.held[1]:
            first, _, scene = self.held
            rows = slice(start - first, stop - first)
            valid = scene.valid[rows] if scene.valid is not None else None
            passthrough = scene.passthrough[:, rows] if scene.passthrough is not None else None
            return Scene(scene.name, scene.cube[:, rows], scene.meta, valid=valid, passthrough=passthrough)
        return self.reader.load(
            self.ctx.options.normalise, Window(start, 0, stop - start, self.width), self.ctx.options.masking
        )

    def _consistency_rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        scene = self._load(start, stop)
        valid = scene.valid if scene.valid is not None else np.ones((stop - start, self.width), dtype=bool)
        return scene.cube, valid

    def lr_rows(self, start: int, stop: int) -> torch.Tensor:
        """LR rows [start, stop) as the network sees them: invalid pixels filled, bad bands 0."""
        t = time.perf_counter()
        lo, hi = max(start - self.margin, 0), min(stop + self.margin, self.height)
        self.held = None
        scene = self._load(lo, hi)
        self.held = (lo, hi, scene)
        cube = scene.cube
        if scene.valid is not None:
            cube = fill_invalid(cube, scene.valid) if scene.valid.any() else np.zeros_like(cube)
        self.seconds["read"] += time.perf_counter() - t
        rows = cube[:, start - lo : stop - lo]  # a copy, never the held strip's own values
        return torch.from_numpy(rows.copy() if cube is scene.cube else np.ascontiguousarray(rows)).to(self.device)

    def valid_rows(self, start: int, stop: int) -> np.ndarray:
        """``(n, W)`` bool: the LR pixels of rows [start, stop) valid in every good band."""
        scene = self._load(start, stop)
        return scene.valid if scene.valid is not None else np.ones((stop - start, self.width), dtype=bool)

    def coarse_into(self, scale: int, sink: Sink, clip: bool) -> None:
        """The ×``scale`` coarse SR, one row of tiles at a time, each strip handed to ``sink``: network segments
        through the backend, short segments bicubic, bad bands 0."""
        c, w = self.bands, self.width
        bands = self.network[0][1] - self.network[0][0]
        rows = self.ctx.options.strip_rows((c, self.height, w), scale)
        grid = self.ctx.runner.grid(scale, self.height, w, bands, rows=rows)
        for row in grid.rows():
            first = row[0]
            strip = self.lr_rows(first.top, first.top + grid.window_h)
            t = time.perf_counter()
            buf = torch.zeros((c, scale * first.core_height, scale * w), device=self.device)
            offset = scale * first.core_top
            window = (grid.window_h, grid.window_w)
            for index, (a, b) in enumerate(self.network):  # tiles counted once, not once per band segment
                jobs = [TileJob(strip[a:b], 0, tile, window, buf[a:b], offset) for tile in row]
                self.ctx.runner.run_tiles(scale, jobs, self.planned.entry.name, count=index == 0)
            for a, b in self.short:  # the strip's halo rows cover the bicubic kernel's reach
                up = imresize(strip[a:b], scale)
                top = scale * (first.core_top - first.top)
                buf[a:b] = up[:, top : top + buf.shape[1]]
            self.seconds["coarse"] += time.perf_counter() - t
            sink(offset, clip_range(buf, self.floor, in_place=True) if clip else buf)

    def intermediate(self, name: str, scale: int) -> tuple[RowStore, Callable[[int, int], torch.Tensor]]:
        """An on-disk ×``scale`` cube filled by :meth:`coarse_into`, and a reader of its rows on the device."""
        shape = (self.bands, scale * self.height, scale * self.width)
        store = RowStore(self.work / f"{name}.raw", shape)
        self.stores.append(store)
        self.coarse_into(scale, _into(store), True)

        def rows(start: int, stop: int) -> torch.Tensor:
            return torch.from_numpy(store.read(start, stop)).to(self.device)

        return store, rows

    def _at(self, factor: int, start: int, stop: int) -> tuple[np.ndarray, int]:
        """Row indices into LR rows read from ``first``, for rows [start, stop) of a ×``factor`` grid, and
        ``first``."""
        index = np.arange(start, stop) // factor
        return index - index[0], int(index[0])

    def valid_at(self, factor: int) -> Callable[[int, int], torch.Tensor]:
        """The LR validity nearest-upsampled to a ×``factor`` grid, by rows (for the fine stage's SAM weight)."""

        def valid(start: int, stop: int) -> torch.Tensor:
            index, first = self._at(factor, start, stop)
            lr = self.valid_rows(first, first + int(index[-1]) + 1)
            return torch.from_numpy(np.repeat(lr[index], factor, axis=1)).to(self.device)

        return valid

    def progress(self, step: str) -> Callable[[int, int], None]:
        """A ``(rows done, of rows)`` callback that reports a streamed step's progress as ``strips`` events."""
        name = f"{self.planned.entry.name}: {step}"

        def done(rows: int, total: int) -> None:
            self.ctx.router.report(Event("strips", name, count=rows, total=total))

        return done

    def write_rows(self, writer: StripWriter, first_row: int, rows: torch.Tensor, *, output: bool = True) -> None:
        """SR rows in normalised units → the output's: bad bands as their raw input, invalid pixels as no-data, and
        in the source's units and dtype unless ``--units normalised``; converted and written a sub-strip at a time
        (:func:`write_step`, down to whole chunks of the file where it can). ``output``: the scene's output, whose
        consistency and capped values are counted (not for its bicubic reference)."""
        c, n, w = rows.shape
        step = min(n, write_step(self.ctx.options.budget, c, w))
        if step < n and step >= writer.row_block:  # whole chunks of the file (opened for writes of this many rows)
            step -= step % writer.row_block
        for top in range(0, n, step):
            self._write_part(writer, first_row + top, rows[:, top : top + step], output)

    def write_reference(self, writer: StripWriter) -> None:
        """``--reference bicubic``: the MATLAB-bicubic interpolation of the filled LR rows, a strip (and the halo the
        kernel reaches) at a time, written as the output is."""
        scale, h = self.ctx.options.scale, self.height
        for start in range(0, h, REFERENCE_STRIP):
            stop = min(start + REFERENCE_STRIP, h)
            lo, hi = max(start - HALO, 0), min(stop + HALO, h)
            rows = upsampled(self.lr_rows(lo, hi).cpu(), scale, self.ctx.options.clip, self.meta.band_floor)
            self.write_rows(writer, scale * start, rows[:, scale * (start - lo) : scale * (stop - lo)], output=False)

    def _write_part(self, writer: StripWriter, first_row: int, rows: torch.Tensor, output: bool = True) -> None:
        scale = self.ctx.options.scale
        values = rows.cpu().numpy()  # a view, read by every step below (the conversions copy it)
        t = time.perf_counter()
        if output:
            self.consistency.add_rows(first_row, values)
        self.seconds["consistency"] += time.perf_counter() - t
        t = time.perf_counter()
        valid = passthrough = None
        if self.meta.bad_bands or self.facts.invalid_pixels:  # the LR rows' flags, read again only where there are some
            index, first = self._at(scale, first_row, first_row + values.shape[1])
            lr = self._load(first, first + int(index[-1]) + 1)
            valid = np.repeat(lr.valid[index], scale, axis=1) if lr.valid is not None else None
            passthrough = np.repeat(lr.passthrough[:, index], scale, axis=2) if lr.passthrough is not None else None
        if self.ctx.options.clip and output:  # values capped at the clip ceiling, counted as in memory
            ceiling = Scene("rows", values, self.meta, valid=valid).at_ceiling()
            self.facts.ceiling = ceiling if self.facts.ceiling is None else self.facts.ceiling + ceiling
            self.facts.factor = self.meta.scale_factor
        if valid is not None or passthrough is not None or self.ctx.options.units == "source":
            part = Scene("rows", values, self.meta, valid=valid, passthrough=passthrough)
            if self.ctx.options.units == "source" and output:
                self.facts.clipped += part.out_of_range()
            values = part.raw() if self.ctx.options.units == "source" else part.normalised()
        writer.write(first_row, np.ascontiguousarray(values))
        self.seconds["write"] += time.perf_counter() - t

    def run(self, writer: StripWriter) -> float | None:
        """Compute the scene into ``writer``; returns the fine stage's SAM weight (None for ``coarse``)."""
        options, scale = self.ctx.options, self.ctx.options.scale
        c, h, w = self.bands, self.height, self.width

        def write(first_row: int, rows: torch.Tensor) -> None:
            self.write_rows(writer, first_row, rows)

        if options.stage == "coarse":
            self.coarse_into(scale, write, options.clip)
            return None
        _high_array, high = self.intermediate("high", scale)
        bands = self.network_bands
        if options.stage == "dual":
            half = scale // 2
            _low_array, low_all = self.intermediate("low", half)
            factor, low_shape, guide = 2, (len(bands), half * h, half * w), half
        else:
            low_all, factor, low_shape, guide = self.lr_rows, scale, (len(bands), h, w), 1

        def high_net(start: int, stop: int) -> torch.Tensor:
            return high(start, stop)[bands]

        def low(start: int, stop: int) -> torch.Tensor:
            return low_all(start, stop)[bands]

        t = time.perf_counter()
        row_bytes = 4 * c * low_shape[2] * factor * factor * 12
        step = max(8, min(low_shape[1], options.budget // max(row_bytes, 1)))
        valid = self.valid_at(guide) if self.facts.invalid_pixels else None
        weight = sam_weight_streamed(high_net, low, low_shape, factor, step, valid, self.progress("SAM weight"))
        written = self.progress("back-projection")
        for first, rows in backproject_streamed(high_net, low, low_shape, factor, weight, step):
            full = clip_range(high(first, first + rows.shape[1]), self.floor)
            floor = self.floor[bands] if self.floor is not None else None
            full[bands] = clip_range(rows, floor) if options.clip else rows
            write(first, full)
            written(first + rows.shape[1], scale * h)
        # writing and the consistency figures happen inside the loop, and have their own counts
        self.seconds["fine"] += time.perf_counter() - t - self.seconds["write"] - self.seconds["consistency"]
        return weight


def _into(store: RowStore) -> Sink:
    def sink(first_row: int, rows: torch.Tensor) -> None:
        store.write(first_row, rows.cpu().numpy())

    return sink


def _scan(
    reader: SceneReader, ctx: SceneContext, height: int, width: int, rows: int = 64
) -> tuple[int, tuple[str, ...]]:
    """The scene's invalid pixels and its notes (counts over the whole scene), read in strips of ``rows``."""
    count, notes = 0, []
    for top in range(0, height, rows):
        window = Window(top, 0, min(rows, height - top), width)
        scene = reader.load(ctx.options.normalise, window, ctx.options.masking)
        count += 0 if scene.valid is None else int((~scene.valid).sum())
        notes.append(scene.meta.notes)
    return count, whole_notes(notes)


def stream_scene(ctx: SceneContext, planned: PlannedScene) -> SceneRecord:
    """One scene too large to hold, start to end (read, compute and write in strips); raises on failure."""
    options, entry, scale = ctx.options, planned.entry, ctx.options.scale
    assert entry.shape is not None
    assert planned.output is not None
    c, h, w = entry.shape
    work = scene_work_dir(planned.output, entry.name)
    work.mkdir(parents=True, exist_ok=True)
    with ctx.archive.open(entry) as reader:
        reader.resolve_in_strips(options.normalise, masking=options.masking)
        meta = reader.load(options.normalise, Window(0, 0, 1, w), options.masking).meta
        good = np.ones(c, dtype=bool)
        good[list(meta.bad_bands)] = False
        facts = SceneFacts.of(good, entry.source, dtype=meta.dtype)
        ctx.route.prepare({b - a for a, b in facts.network})  # its segments' artefacts, before any strip runs
        invalid, notes = _scan(reader, ctx, h, w)
        meta = meta.replace(notes=notes)  # the whole scene's, as an in-memory read gives them
        scene = _StreamedScene(ctx, planned, reader, meta, work, facts)
        scene.facts.invalid_pixels = invalid
        out_meta = output_meta(meta, scale).replace(
            source=str(entry.path), origin=entry.origin, format=entry.format or meta.format
        )
        dtype = meta.dtype if options.units == "source" else "float32"
        factor = declared_factor(out_meta, options.units)
        with open_strips(
            planned.output,
            (c, scale * h, scale * w),
            out_meta,
            ctx.output_attrs(),
            dtype=dtype,
            units=options.units,
            factor=factor,
            zarr_format=options.zarr_format,
            rows=write_step(options.budget, c, scale * w),
        ) as writer:
            try:
                weight = scene.run(writer)
            finally:
                for store in scene.stores:
                    store.close()
            t = time.perf_counter()
            faithful = scene.consistency.finish()
            scene.seconds["consistency"] += time.perf_counter() - t
            t = time.perf_counter()
            if faithful is not None:  # in the output's provenance, as an in-memory scene's are
                writer.add_attrs({CONSISTENCY_ATTR: json.dumps(faithful, sort_keys=True)})
            writer.commit()
            scene.seconds["write"] += time.perf_counter() - t
        try:
            quality = _after_output(scene, ctx, planned, out_meta, (c, scale * h, scale * w), dtype, factor)
        except BaseException:  # the output committed above is not left beside a failed record
            remove_outputs(planned.output)
            raise
    shutil.rmtree(work, ignore_errors=True)
    seconds = dict(scene.seconds)
    seconds["total"] = sum(seconds.values())
    return ctx.finished(
        planned,
        scene.facts,
        shape_out=[c, scale * h, scale * w],
        sam_weight=weight,
        seconds=seconds,
        qa=quality,
        consistency=faithful,
    )


def _after_output(
    scene: _StreamedScene,
    ctx: SceneContext,
    planned: PlannedScene,
    out_meta: SceneMeta,
    shape: tuple[int, int, int],
    dtype: str,
    factor: float | None,
) -> dict[str, int] | None:
    """The files written beside a streamed scene's output: its bicubic reference (``--reference bicubic``) and its
    quality layer (``--qa``, whose counts are returned); what this wrote is removed again if a later one fails."""
    options = ctx.options
    assert planned.output is not None
    written: list[Path] = []
    try:
        if options.reference == "bicubic":
            t = time.perf_counter()
            attrs = {**ctx.output_attrs(), "stage": "bicubic interpolation (MATLAB imresize), the reference"}
            with open_strips(
                reference_path(planned.output),
                shape,
                out_meta,
                attrs,
                dtype=dtype,
                units=options.units,
                factor=factor,
                zarr_format=options.zarr_format,
                rows=write_step(options.budget, shape[0], shape[2]),
            ) as reference:
                scene.write_reference(reference)
                written.append(reference.commit())
            scene.seconds["write"] += time.perf_counter() - t
        return _write_quality(scene, planned.output, out_meta, ctx) if options.qa else None
    except BaseException:
        for path in written:
            remove_outputs(path)
        raise


def _write_quality(scene: _StreamedScene, output: Path, meta: SceneMeta, ctx: SceneContext) -> dict[str, int]:
    """The quality layer of a streamed scene (1 byte per output pixel), from its validity read in strips."""
    valid = np.concatenate(
        [scene.valid_rows(top, min(top + 64, scene.height)) for top in range(0, scene.height, 64)], axis=0
    )
    shell = Scene(output.stem, np.zeros((1, 1, 1), dtype=np.float32), meta)
    layer = quality(valid, valid.shape, shell, ctx.options.scale, reach(ctx.pool, ctx.options))
    try:
        write_scene(
            qa_path(output), layer, attrs=ctx.output_attrs(), units="source", zarr_format=ctx.options.zarr_format
        )
    except Exception as exc:
        raise DataError(f"writing the quality layer {qa_path(output)}: {exc}") from exc
    return quality_counts(layer)


__all__ = ["fill_margin", "stream_scene"]
