"""``run_archive``: super-resolve every scene of an archive, any size, with any backend, losing nothing.

archive → scenes → LR tiles (halo ≥ the receptive radius) → batches → engine → stitching → fine stage → writer.

- **Overlap.** A reader thread loads (and hashes) the next scenes while the engine runs; a writer thread writes
  finished scenes while the next ones compute. Both queues are bounded, so memory stays bounded.
- **Batches mix scenes.** Small scenes whose tiles have the same shape are batched together.
- **Any size.** A scene whose working set exceeds the memory budget is *streamed*: LR row strips through the
  engine into on-disk intermediates, then the fine stage in two exact passes over strips (one SAM weight per
  scene, :mod:`dualsr_deploy.infer.fine`), written strip by strip (HDF5 or ``.npy``).
- **Nothing lost.** Outputs are atomic (temporary name, then rename); ``OUT/manifest.jsonl`` gets one line per
  scene (input hash, output, engine, timings, status) as it ends; a failing scene is recorded and the run goes
  on; Ctrl-C finishes the scenes in hand and stops (a second one abandons them); ``resume`` skips scenes whose
  last record is ``ok`` with the same input hash and whose output is still there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dualsr_deploy._version import __version__
from dualsr_deploy.archs.coarsr import SUPPORTED_SCALES
from dualsr_deploy.data.archive import Archive, ArchiveEntry, open_archive
from dualsr_deploy.data.chunked import CHUNKED_SUFFIXES, ChunkedWriter
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.data.scene import Scene, SceneMeta, Window
from dualsr_deploy.data.writers import write_scene
from dualsr_deploy.errors import DualSRError, InputError
from dualsr_deploy.infer.engines import EnginePool, EngineSpec
from dualsr_deploy.infer.fine import backproject_streamed, sam_weight_streamed
from dualsr_deploy.infer.manifest import RunManifest, SceneRecord, input_digest
from dualsr_deploy.infer.tiling import Tile, TileGrid, paste, receptive_radius
from dualsr_deploy.ops.backproject import backproject_with_weights
from dualsr_deploy.train.stop import StopRequest

if TYPE_CHECKING:
    from dualsr_deploy.infer.cluster import ClusterSpec

STAGES = ("coarse", "dual", "backproject")
FORMATS = {"h5": ".h5", "npy": ".npy", "mat": ".mat", "tif": ".tif", "envi": ".hdr"}
_LIKE_INPUT = {
    "hdf5": ".h5",
    "mat-v7.3": ".mat",
    "mat-v5": ".mat",
    "npy": ".npy",
    "npz": ".npy",
    "tiff": ".tif",
    "geotiff": ".tif",
    "envi": ".hdr",
    "cave": ".h5",
}
WORK_DIR = ".dualsr-work"
AUTO_TILE = 128  # LR pixels: whole CAVE-size ×4 scenes in one tile (see TileEngine.tile_for)
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


class RunError(DualSRError):
    """The run as a whole cannot start (bad options, an output folder holding another run, …)."""


def default_memory_budget() -> int:
    """A quarter of this machine's physical memory."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


@dataclass(frozen=True)
class InferOptions:
    """What ``dualsr infer`` was asked to do (see the CLI's help for each)."""

    scale: int = 4
    stage: str = "dual"
    engine: EngineSpec = field(default_factory=EngineSpec)
    tile: int | None = None  # None: auto (see TileEngine.tile_for)
    batch: int = 8
    format: str | None = None
    clip: bool = True
    resume: bool = False
    overwrite: bool = False
    memory_budget: int | None = None
    normalise: Normalisation = field(default_factory=Normalisation)
    key: str | None = None
    layout: str | None = None
    root: Path | None = None

    def __post_init__(self) -> None:
        if self.scale not in SUPPORTED_SCALES:
            raise InputError(f"scale {self.scale} is not supported; CoarSR exists for {SUPPORTED_SCALES}")
        if self.stage not in STAGES:
            raise InputError(f"unknown stage {self.stage!r}; choose one of {', '.join(STAGES)}")
        if self.tile is not None and self.tile < 8:
            raise InputError(f"--tile must be at least 8 LR pixels; got {self.tile}")
        if self.batch < 1:
            raise InputError(f"--batch must be at least 1; got {self.batch}")
        if self.format is not None and self.format not in FORMATS:
            raise InputError(f"unknown --format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.resume and self.overwrite:
            raise InputError("--resume continues a run and --overwrite redoes it: give one of them")
        if self.stage == "dual":
            half = self.scale // 2
            if self.scale == 2:
                raise InputError(
                    "the dual stage needs a ×s/2 CoarSR for its fine stage, and ×2 has none (s/2 = 1); run --stage "
                    "coarse, or --stage backproject (SAM-weighted back-projection onto the LR input)"
                )
            if self.scale % 2 or not self.engine.has_weights(half):
                raise InputError(
                    f"the dual stage at ×{self.scale} needs a ×{self.scale / 2:g} CoarSR for its fine stage, and "
                    f"there is none{'' if self.scale % 2 else ' (pass one with --weights-half)'}; run --stage "
                    "coarse, or --stage backproject (SAM-weighted back-projection onto the LR input)"
                )

    @property
    def budget(self) -> int:
        return self.memory_budget if self.memory_budget is not None else default_memory_budget()

    def working_bytes(self, shape: tuple[int, int, int]) -> int:
        """Estimated peak bytes to process a scene whole: LR, the coarse SR cube(s), the fine stage's resizes and
        differences and the written copy; about 12 HR copies for the fine stages, 5 for coarse alone (measured: a
        31×256×256 LR scene at ×4 dual peaked 1.6 GB above the process, ~12.5 HR copies)."""
        c, h, w = shape
        s2 = self.scale * self.scale
        return 4 * c * h * w * (1 + (5 if self.stage == "coarse" else 12) * s2)


@dataclass(frozen=True)
class PlannedScene:
    entry: ArchiveEntry
    action: str  # run | skip | fail
    output: Path | None = None
    mode: str = "memory"  # memory | streamed
    tiles: int = 0
    reason: str | None = None
    digest: str | None = None


@dataclass
class Event:
    """A progress report: ``kind`` is plan, scene, tiles, done or message (the callback may run on worker
    threads)."""

    kind: str
    name: str = ""
    count: int = 0
    total: int = 0
    record: SceneRecord | None = None
    text: str = ""


@dataclass
class ArchiveReport:
    out_dir: Path
    plan: list[PlannedScene]
    records: list[SceneRecord] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    engines: list[str] = field(default_factory=list)
    resumed: list[PlannedScene] = field(default_factory=list)

    @property
    def ok(self) -> list[SceneRecord]:
        return [r for r in self.records if r.status == "ok"]

    @property
    def failed(self) -> list[SceneRecord]:
        return [r for r in self.records if r.status == "failed"]

    @property
    def skipped(self) -> list[PlannedScene]:
        """Scenes done by an earlier run (``resume``), found so in planning (dry run) or by the reader thread."""
        return [p for p in self.plan if p.action == "skip"] + self.resumed

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed else EXIT_OK


# --- planning ---------------------------------------------------------------------------------------------------


def _suffix(entry: ArchiveEntry, options: InferOptions) -> str:
    if options.format is not None:
        return FORMATS[options.format]
    return _LIKE_INPUT.get(entry.format or "", ".h5")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def plan_archive(archive: Archive, out_dir: Path, options: InferOptions, *, hashes: bool) -> list[PlannedScene]:
    """What a run would do with each scene. ``hashes``: hash every input now to decide ``resume`` skips (the dry
    run); a real run leaves hashing, and so the skip decision, to its reader thread, overlapped with compute."""
    manifest = RunManifest(out_dir)
    done = manifest.completed() if options.resume else {}
    inputs = {entry.path.resolve() for entry in archive.entries}
    plan: list[PlannedScene] = []
    outputs: set[Path] = set()
    for entry in archive.entries:
        if entry.error is not None or entry.shape is None:
            plan.append(PlannedScene(entry, "fail", reason=entry.error or "unreadable"))
            continue
        _c, h, w = entry.shape
        suffix = _suffix(entry, options)
        streamed = options.working_bytes(entry.shape) > options.budget
        if streamed and suffix not in CHUNKED_SUFFIXES:
            if options.format is not None:
                plan.append(
                    PlannedScene(
                        entry,
                        "fail",
                        reason=f"the scene needs ~{options.working_bytes(entry.shape) / 2**30:.1f} GiB whole, over "
                        f"the memory budget, and is streamed, which --format {options.format} cannot take; use "
                        "--format h5 or npy (or raise --memory-budget)",
                    )
                )
                continue
            note = f"streamed, so written as .h5 ({suffix} cannot be written in strips)"
            suffix = ".h5"
        else:
            note = None
        output = out_dir / f"{entry.name}{suffix}"
        if not _inside(output, out_dir) or output.resolve() in inputs or output in outputs:
            why = (
                "would overwrite an input"
                if output.resolve() in inputs
                else "would leave the output folder"
                if not _inside(output, out_dir)
                else "has the same output name as another scene"
            )
            plan.append(PlannedScene(entry, "fail", output=output, reason=f"{output}: the output {why}"))
            continue
        outputs.add(output)
        tiles = len(TileGrid(h, w, options.tile or AUTO_TILE, 0)) * (2 if options.stage == "dual" else 1)
        digest = input_digest(entry.path, entry.key) if hashes else None
        previous = done.get(entry.name)
        if previous is not None and previous.input_sha256 == digest and output.is_file():
            plan.append(PlannedScene(entry, "skip", output, reason="done in an earlier run", digest=digest))
            continue
        mode = "streamed" if streamed else "memory"
        plan.append(PlannedScene(entry, "run", output, mode, tiles, reason=note, digest=digest))
    return plan


# --- the engine side --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One tile to run: its window in ``source`` (a whole LR cube or a row strip of one) starts at
    (``top``, ``tile.left``); its core lands in ``out``, whose first row is scene HR row ``row_offset``."""

    source: torch.Tensor
    top: int
    tile: Tile
    window: tuple[int, int]
    out: torch.Tensor
    row_offset: int = 0


class TileEngine:
    """Coarse SR of LR cubes through the pool's backends, tile by tile, batched across scenes."""

    def __init__(self, pool: EnginePool, options: InferOptions, report: Callable[[Event], None]) -> None:
        self.pool = pool
        self.options = options
        self.report = report

    def tile_for(self, scale: int, bands: int) -> int:
        """``--tile``, or automatically: the largest core whose window an engine profile takes (TensorRT), else
        :data:`AUTO_TILE`. Large tiles pay least for their halo: on the 2-core CPU a CAVE scene at ×4 ran 2.4×
        faster with 128 than with 64 (``dualsr bench``)."""
        if self.options.tile is not None:
            return self.options.tile
        caps = self.pool.backend(scale, bands).capabilities
        if caps.max_shape is not None:
            halo = receptive_radius(self.pool.model(scale).config)
            return max(8, min(caps.max_shape[1], caps.max_shape[2]) - 2 * halo)
        return AUTO_TILE

    def grid(self, scale: int, height: int, width: int, bands: int) -> TileGrid:
        halo = receptive_radius(self.pool.model(scale).config)
        return TileGrid(height, width, self.tile_for(scale, bands), halo)

    def batch_size(self, scale: int, bands: int, window: tuple[int, int]) -> int:
        """``--batch``, capped by an engine profile and by a quarter of the memory budget.

        Per tile: the output, skip and sum (3·s² floats per LR pixel and band) and the recurrent scan's two
        F-channel maps; an exported graph also holds the network's activations for every plane at once (the torch
        engine runs them in chunks), ~3× the model's peak per pixel as measured with ONNX Runtime on CPU.
        """
        backend = self.pool.backend(scale, bands)
        caps = backend.capabilities
        limit = caps.max_shape[0] if caps.max_shape is not None else self.options.batch
        core = self.pool.model(scale).core
        per_pixel = 4 * (3 * scale * scale + 2 * core.config.n_feats)
        if self.options.engine.engine != "torch":
            per_pixel += 3 * core.activation_bytes_per_pixel()
        per_tile = bands * window[0] * window[1] * per_pixel
        return max(1, min(self.options.batch, limit, self.options.budget // 4 // per_tile))

    def run_tiles(self, scale: int, jobs: list[_Job], name: str) -> None:
        """Run every job's window through the ×``scale`` engine, a batch at a time, and paste the cores."""
        if not jobs:
            return
        bands = jobs[0].source.shape[0]
        backend = self.pool.backend(scale, bands)
        size = self.batch_size(scale, bands, jobs[0].window)
        for start in range(0, len(jobs), size):
            chunk = jobs[start : start + size]
            windows = [
                job.source[:, job.top : job.top + job.window[0], job.tile.left : job.tile.left + job.window[1]]
                for job in chunk
            ]
            sr = backend.run(torch.stack(windows))
            for job, one in zip(chunk, sr, strict=True):
                paste(job.out, job.tile, one, scale, row_offset=job.row_offset)
            self.report(Event("tiles", name, count=len(chunk)))

    def coarse(self, scale: int, cubes: list[torch.Tensor], names: list[str]) -> list[torch.Tensor]:
        """Whole-scene coarse SR ``(C, s·h, s·w)`` of same-window-shape LR cubes, tiles batched together."""
        device = self.pool.backend(scale, cubes[0].shape[0]).device
        outs: list[torch.Tensor] = []
        jobs: list[_Job] = []
        for cube in cubes:
            c, h, w = cube.shape
            out = torch.empty((c, scale * h, scale * w), device=device)
            outs.append(out)
            grid = self.grid(scale, h, w, c)
            jobs += [_Job(cube, tile.top, tile, (grid.window_h, grid.window_w), out) for tile in grid]
        self.run_tiles(scale, jobs, names[0] if len(names) == 1 else f"{len(names)} scenes")
        return outs


# --- the run ----------------------------------------------------------------------------------------------------


@dataclass
class _Item:
    planned: PlannedScene
    skip: bool = False
    scene: Scene | None = None
    error: str | None = None
    read_seconds: float = 0.0


@dataclass
class SceneContext:
    """What processing a scene takes, shared by the single-process run and the cluster workers
    (:mod:`dualsr_deploy.infer.cluster`); ``worker`` names the process in the records."""

    archive: Archive
    options: InferOptions
    pool: EnginePool
    engine: TileEngine
    worker: str | None = None

    def record(self, planned: PlannedScene, status: str, **facts: Any) -> SceneRecord:
        return scene_record(self.options, planned, status, worker=self.worker, **facts)


def scene_record(
    options: InferOptions, planned: PlannedScene, status: str, *, notes: list[str] | None = None, **facts: Any
) -> SceneRecord:
    """The manifest record of a planned scene that ended with ``status`` (``facts``: the other fields)."""
    entry = planned.entry
    return SceneRecord(
        entry.name,
        str(entry.path),
        status,
        input_sha256=planned.digest,
        engine=options.engine.label,
        stage=options.stage,
        scale=options.scale,
        shape_in=list(entry.shape) if entry.shape else None,
        mode=planned.mode,
        tiles=planned.tiles,
        notes=([planned.reason] if planned.reason and status == "ok" else []) + (notes or []),
        **facts,
    )


_Written = tuple[SceneRecord, Path, Scene, dict[str, str]]


def _load(ctx: SceneContext, planned: PlannedScene, previous: str | None) -> _Item:
    """Hash the input, decide a ``resume`` skip (``previous``: the input hash of the scene's last ``ok`` record),
    and read an in-memory scene (a streamed one is read strip by strip later)."""
    started = time.perf_counter()
    try:
        planned = replace(planned, digest=input_digest(planned.entry.path, planned.entry.key))
    except OSError as exc:
        planned = replace(planned, reason=f"cannot hash the input: {exc}")
    item = _Item(planned)
    if (
        previous is not None
        and planned.digest is not None
        and previous == planned.digest
        and planned.output is not None
        and planned.output.is_file()
    ):
        item.skip = True
    elif planned.mode == "memory":
        try:
            with ctx.archive.open(planned.entry) as reader:
                item.scene = reader.load(ctx.options.normalise)
        except (DualSRError, OSError, ValueError) as exc:
            item.error = str(exc)
    item.read_seconds = time.perf_counter() - started
    return item


def _compute(ctx: SceneContext, items: list[_Item]) -> list[_Written]:
    """Coarse SR (tiles of all ``items`` batched together) and the fine stage of in-memory scenes: what to write."""
    options = ctx.options
    scale = options.scale
    scenes = [item.scene for item in items]
    assert all(scene is not None for scene in scenes)
    names = [item.planned.entry.name for item in items]
    device = ctx.pool.backend(scale, scenes[0].cube.shape[0]).device  # type: ignore[union-attr]
    cubes = [torch.from_numpy(scene.cube).to(device) for scene in scenes]  # type: ignore[union-attr]
    t0 = time.perf_counter()
    highs = ctx.engine.coarse(scale, cubes, names)
    lows = ctx.engine.coarse(scale // 2, cubes, names) if options.stage == "dual" else None
    coarse_seconds = (time.perf_counter() - t0) / len(items)
    jobs: list[_Written] = []
    for index, item in enumerate(items):
        t1 = time.perf_counter()
        sr, weight = finish_stage(options, highs[index], lows[index] if lows is not None else None, cubes[index])
        fine_seconds = time.perf_counter() - t1
        scene = item.scene
        assert scene is not None
        assert item.planned.output is not None
        result = Scene(scene.name, np.ascontiguousarray(sr.cpu().numpy()), _output_meta(scene.meta, scale))
        record = ctx.record(
            item.planned,
            "ok",
            output=str(item.planned.output),
            shape_out=list(result.cube.shape),
            sam_weight=weight,
            seconds={
                "read": round(item.read_seconds, 3),
                "coarse": round(coarse_seconds, 3),
                "fine": round(fine_seconds, 3),
            },
        )
        jobs.append((record, item.planned.output, result, _attrs(options, ctx.pool, options.stage)))
    return jobs


def _write(job: _Written) -> SceneRecord:
    """Write one finished scene atomically; a failure is this scene's, recorded in what is returned."""
    record, path, scene, attrs = job
    started = time.perf_counter()
    try:
        write_scene(path, scene, attrs=attrs)
    except Exception as exc:  # any failure is this scene's, never the run's
        record.status, record.error, record.output = "failed", f"writing {path}: {exc}", None
    record.seconds["write"] = round(time.perf_counter() - started, 3)
    record.seconds["total"] = round(sum(v for k, v in record.seconds.items() if k != "total"), 3)
    return record


_SCENE_ERRORS = (DualSRError, RuntimeError, ValueError, OSError)


def _streamed(ctx: SceneContext, planned: PlannedScene) -> SceneRecord:
    try:
        return _stream_scene(ctx, planned)
    except _SCENE_ERRORS as exc:
        return ctx.record(planned, "failed", error=f"{type(exc).__name__}: {exc}")


def process_scene(
    ctx: SceneContext,
    planned: PlannedScene,
    previous: str | None,
    engine_lock: contextlib.AbstractContextManager[Any] | None = None,
) -> SceneRecord | None:
    """One scene start to end in this process (what a cluster worker runs): hash, read, compute, write. Returns
    its record, or None when ``resume`` finds it done (``previous``: see :func:`_load`). A scene's failure is in
    its record; only what kills the process escapes.

    ``engine_lock`` is held while the scene uses the engines (the whole of a streamed scene), so that callers on
    several threads overlap one scene's reading and writing with another's compute, as the single-process run
    does with its reader and writer threads."""
    lock = engine_lock if engine_lock is not None else contextlib.nullcontext()
    item = _load(ctx, planned, previous)
    if item.skip:
        return None
    if item.error is not None:
        return ctx.record(item.planned, "failed", error=item.error)
    with lock:
        if item.planned.mode == "streamed":
            return _streamed(ctx, item.planned)
        try:
            (job,) = _compute(ctx, [item])
        except _SCENE_ERRORS as exc:
            return ctx.record(item.planned, "failed", error=f"{type(exc).__name__}: {exc}")
    item.scene = None  # the LR cube: not needed while writing
    return _write(job)


def _attrs(options: InferOptions, pool: EnginePool, stage: str) -> dict[str, str]:
    attrs = {
        "model": f"CoarSR ×{options.scale}",
        "scale": str(options.scale),
        "stage": stage,
        "engine": options.engine.label,
        "weights_sha256": pool.model(options.scale).info.sha256,
        "dualsr_version": __version__,
    }
    if stage == "dual":
        attrs["weights_half_sha256"] = pool.model(options.scale // 2).info.sha256
    return attrs


def _output_meta(meta: SceneMeta, scale: int) -> SceneMeta:
    georef = meta.georef.scaled(scale) if meta.georef is not None else None
    return meta.replace(georef=georef)


def _clean_stale(out_dir: Path) -> None:
    """Temporary files a killed run left (atomic writes, streamed intermediates)."""
    shutil.rmtree(out_dir / WORK_DIR, ignore_errors=True)
    for stale in out_dir.rglob(".*.tmp"):
        stale.unlink(missing_ok=True)


def run_archive(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: InferOptions | None = None,
    *,
    progress: Callable[[Event], None] | None = None,
    dry_run: bool = False,
    cluster: ClusterSpec | None = None,
) -> ArchiveReport:
    """Super-resolve every scene of ``source`` into ``out_dir``; see the module docstring. With ``cluster``, the
    scenes are given to workers on a Ray cluster (:mod:`dualsr_deploy.infer.cluster`), with the same outputs,
    manifest and ``resume``.

    Returns the report (its ``exit_code``: 0 all done, 1 some scene failed, 130 interrupted). Raises
    :class:`RunError` only for what stops the whole run before it starts.
    """
    options = options or InferOptions()
    report_to = progress or (lambda _event: None)
    out = Path(out_dir)
    archive = open_archive(source, key=options.key, layout=options.layout, root=options.root)
    if out.resolve() == archive.root.resolve():
        raise RunError(f"{out}: the output folder is the archive's own folder; choose another -o")
    if Path(source).is_dir() and _inside(out, archive.root):
        raise RunError(
            f"{out} lies inside the archive folder {archive.root}: its outputs would be read as scenes by the next "
            "run (or --resume); choose an -o outside it"
        )
    manifest = RunManifest(out)
    if manifest.exists() and not (options.resume or options.overwrite) and not dry_run:
        raise RunError(
            f"{out} holds an earlier run ({manifest.path.name}); --resume to continue it, --overwrite to redo "
            "every scene, or choose another -o"
        )
    with contextlib.ExitStack() as stack:
        session = None
        if cluster is not None:
            from dualsr_deploy.infer.cluster import ClusterSession, layout_workers

            session = stack.enter_context(ClusterSession(cluster)) if not dry_run else None
            if session is not None:
                wanted = cluster.device or ("cuda" if options.engine.engine == "trt" else session.default_device())
                layout = layout_workers(cluster, session.nodes(), wanted)
                options = replace(
                    options,
                    engine=replace(options.engine, device=layout.device),
                    memory_budget=options.memory_budget or layout.memory_budget,
                )
                report_to(
                    Event(
                        "message",
                        text=f"Ray cluster {cluster.text}: {layout.count} worker(s) on {len(session.nodes())} "
                        f"node(s), {layout.cpus} CPU(s){' and 1 GPU' if layout.gpus else ''} each",
                    )
                )
        pool = EnginePool(options.engine, say=lambda text: report_to(Event("message", text=text)))
        scales = (options.scale, options.scale // 2) if options.stage == "dual" else (options.scale,)
        for scale in scales:
            pool.model(scale)  # missing or mismatched weights stop the run before anything is written
        plan = plan_archive(archive, out, options, hashes=dry_run and options.resume)
        result = ArchiveReport(out, plan)
        total_tiles = sum(p.tiles for p in plan if p.action == "run")
        report_to(Event("plan", count=sum(p.action == "run" for p in plan), total=total_tiles))
        if dry_run:
            return result
        if session is not None and options.engine.engine != "torch":  # exported once here, not by every worker
            for bands in sorted({p.entry.shape[0] for p in plan if p.action == "run" and p.entry.shape}):
                for scale in scales:
                    pool.graph(scale, bands)
        out.mkdir(parents=True, exist_ok=True)
        if options.resume:
            _clean_stale(out)
        started = time.perf_counter()

        def finish(record: SceneRecord) -> None:
            manifest.append(record)
            result.records.append(record)
            report_to(Event("done", record.name, record=record))

        for planned in plan:
            if planned.action == "fail":
                finish(SceneRecord(planned.entry.name, str(planned.entry.path), "failed", error=planned.reason))

        stop = StopRequest()
        try:
            if session is not None:
                from dualsr_deploy.infer.cluster import run_on_cluster

                with stop.installed():
                    outcome = run_on_cluster(
                        session,
                        layout,
                        [p for p in plan if p.action == "run"],
                        options,
                        out_dir=out,
                        archive_root=archive.root,
                        weights={scale: pool.model(scale).info.sha256 for scale in scales},
                        done=manifest.completed() if options.resume else {},
                        finish=finish,
                        report=report_to,
                        stop=stop,
                    )
                result.engines, result.interrupted = outcome.engines, outcome.interrupted
                result.resumed = outcome.resumed
            else:
                runner = _Runner(
                    SceneContext(archive, options, pool, TileEngine(pool, options, report_to)),
                    plan,
                    finish,
                    report_to,
                    stop,
                    manifest,
                )
                try:
                    with stop.installed():
                        runner.run()
                finally:
                    result.engines = pool.opened
                    result.interrupted = runner.interrupted
                    result.resumed = runner.resumed
        finally:
            pool.close()
            result.seconds = time.perf_counter() - started
            shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return result


class _Runner:
    def __init__(
        self,
        ctx: SceneContext,
        plan: list[PlannedScene],
        finish: Callable[[SceneRecord], None],
        report: Callable[[Event], None],
        stop: StopRequest,
        manifest: RunManifest,
    ) -> None:
        self.ctx = ctx
        self.todo = [p for p in plan if p.action == "run"]
        self.options = ctx.options
        self.finish = finish
        self.report = report
        self.stop = stop
        self.interrupted = False
        self.resumed: list[PlannedScene] = []
        self.done = manifest.completed() if ctx.options.resume else {}
        self._halt = threading.Event()
        self.loaded: queue.Queue[_Item | None] = queue.Queue(maxsize=2)
        self.written: queue.Queue[_Written | None] = queue.Queue(maxsize=2)

    # reader thread: loads in-memory scenes ahead of the engine (streamed ones are read by the engine itself)
    def _read(self) -> None:
        try:
            for planned in self.todo:
                if self._halt.is_set():
                    break
                previous = self.done.get(planned.entry.name)
                item = _load(self.ctx, planned, previous.input_sha256 if previous is not None else None)
                while not self._halt.is_set():
                    try:
                        self.loaded.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        finally:
            self._put_end(self.loaded)

    def _put_end(self, q: queue.Queue[Any]) -> None:
        while True:
            try:
                q.put(None, timeout=0.2)
                return
            except queue.Full:
                if self._halt.is_set():
                    with contextlib.suppress(queue.Empty):
                        q.get_nowait()

    # writer thread: writes finished in-memory scenes atomically, then records them
    def _write(self) -> None:
        while True:
            job = self.written.get()
            if job is None:
                return
            self.finish(_write(job))

    def run(self) -> None:
        reader = threading.Thread(target=self._read, name="dualsr-reader", daemon=True)
        writer = threading.Thread(target=self._write, name="dualsr-writer", daemon=True)
        reader.start()
        writer.start()
        try:
            for group in self._groups():
                self._process(group)
                if self.stop.requested:
                    self.interrupted = True
                    break
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self._halt.set()
            self.written.put(None)
            writer.join()
            reader.join(timeout=5)

    def _groups(self) -> Iterator[list[_Item]]:
        """Items in order; consecutive in-memory scenes with the same tile shapes are grouped up to a batch."""
        pending: _Item | None = None
        while True:
            first = pending if pending is not None else self.loaded.get()
            pending = None
            if first is None:
                return
            group = [first]
            key = self._key(first)
            tiles = first.planned.tiles
            while key is not None and tiles < self.options.batch:
                try:
                    nxt = self.loaded.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    yield group
                    return
                if self._key(nxt) != key:
                    pending = nxt
                    break
                group.append(nxt)
                tiles += nxt.planned.tiles
            yield group
            if self.stop.requested:
                return

    def _key(self, item: _Item) -> tuple[Any, ...] | None:
        if item.skip or item.scene is None or item.error is not None:
            return None
        c, h, w = item.scene.cube.shape
        scales = [self.options.scale] + ([self.options.scale // 2] if self.options.stage == "dual" else [])
        windows = []
        for scale in scales:
            grid = self.ctx.engine.grid(scale, h, w, c)
            windows.append((grid.window_h, grid.window_w))
        return (c, *windows)

    def _process(self, group: list[_Item]) -> None:
        if group[0].skip:
            self.resumed.append(group[0].planned)
            self.report(Event("skip", group[0].planned.entry.name, count=group[0].planned.tiles))
            return
        for item in group:
            self.report(Event("scene", item.planned.entry.name, total=item.planned.tiles))
        live = [item for item in group if item.error is None]
        for item in group:
            if item.error is not None:
                self.finish(self.ctx.record(item.planned, "failed", error=item.error))
        if not live:
            return
        try:
            if live[0].planned.mode == "streamed":
                self.finish(_streamed(self.ctx, live[0].planned))
                return
            for job in _compute(self.ctx, live):
                self.written.put(job)
        except KeyboardInterrupt:
            for item in live:
                self.finish(self.ctx.record(item.planned, "interrupted", error="abandoned by a second Ctrl-C"))
            raise
        except _SCENE_ERRORS as exc:
            for item in live:
                self.finish(self.ctx.record(item.planned, "failed", error=f"{type(exc).__name__}: {exc}"))


def _stream_scene(ctx: SceneContext, planned: PlannedScene) -> SceneRecord:
    """One scene too large to hold: coarse SR in LR row strips, the fine stage in two passes over strips."""
    options, pool, engine = ctx.options, ctx.pool, ctx.engine
    entry, scale = planned.entry, options.scale
    assert entry.shape is not None
    assert planned.output is not None
    c, h, w = entry.shape
    seconds = {"read": 0.0, "coarse": 0.0, "fine": 0.0, "write": 0.0}
    work = planned.output.parent / WORK_DIR / hashlib.sha1(entry.name.encode()).hexdigest()[:16]
    work.mkdir(parents=True, exist_ok=True)
    device = pool.backend(scale, c).device
    with ctx.archive.open(entry) as reader:
        reader.resolve_in_strips(options.normalise)
        meta = reader.load(options.normalise, Window(0, 0, 1, w)).meta

        def lr_rows(start: int, stop: int) -> torch.Tensor:
            t = time.perf_counter()
            cube = reader.load(options.normalise, Window(start, 0, stop - start, w)).cube
            seconds["read"] += time.perf_counter() - t
            return torch.from_numpy(cube).to(device)

        def coarse_into(model_scale: int, sink: Callable[[int, torch.Tensor], None], clip: bool) -> None:
            grid = engine.grid(model_scale, h, w, c)
            for row in grid.rows():
                first = row[0]
                strip = lr_rows(first.top, first.top + grid.window_h)
                t = time.perf_counter()
                buf = torch.empty((c, model_scale * first.core_height, model_scale * w), device=device)
                offset = model_scale * first.core_top
                window = (grid.window_h, grid.window_w)
                engine.run_tiles(model_scale, [_Job(strip, 0, tile, window, buf, offset) for tile in row], entry.name)
                seconds["coarse"] += time.perf_counter() - t
                sink(offset, buf.clamp(0, 1) if clip else buf)

        def into(array: np.ndarray) -> Callable[[int, torch.Tensor], None]:
            def sink(first_row: int, rows: torch.Tensor) -> None:
                array[:, first_row : first_row + rows.shape[1]] = rows.cpu().numpy()

            return sink

        attrs = _attrs(options, pool, options.stage)
        out_meta = _output_meta(meta, scale).replace(source=str(entry.path), format=entry.format or meta.format)
        weight = None
        with ChunkedWriter(planned.output, (c, scale * h, scale * w), out_meta, attrs) as writer:

            def write(first_row: int, rows: torch.Tensor) -> None:
                t = time.perf_counter()
                writer.write(first_row, rows.cpu().numpy())
                seconds["write"] += time.perf_counter() - t

            if options.stage == "coarse":
                coarse_into(scale, write, options.clip)
            else:
                high_mm = np.lib.format.open_memmap(
                    work / "high.npy", mode="w+", dtype=np.float32, shape=(c, scale * h, scale * w)
                )
                coarse_into(scale, into(high_mm), True)

                def high(start: int, stop: int) -> torch.Tensor:
                    return torch.from_numpy(np.array(high_mm[:, start:stop])).to(device)

                if options.stage == "dual":
                    half = scale // 2
                    low_mm = np.lib.format.open_memmap(
                        work / "low.npy", mode="w+", dtype=np.float32, shape=(c, half * h, half * w)
                    )
                    coarse_into(half, into(low_mm), True)

                    def low(start: int, stop: int) -> torch.Tensor:
                        return torch.from_numpy(np.array(low_mm[:, start:stop])).to(device)

                    factor, low_shape = 2, (c, half * h, half * w)
                else:
                    low, factor, low_shape = lr_rows, scale, (c, h, w)
                t = time.perf_counter()
                row_bytes = 4 * c * low_shape[2] * factor * factor * 12
                step = max(8, min(low_shape[1], options.budget // max(row_bytes, 1)))
                weight = sam_weight_streamed(high, low, low_shape, factor, step)
                for first, rows in backproject_streamed(high, low, low_shape, factor, weight, step):
                    write(first, rows.clamp(0, 1) if options.clip else rows)
                seconds["fine"] += time.perf_counter() - t - seconds["write"]
            t = time.perf_counter()
            writer.commit()
            seconds["write"] += time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    seconds = {k: round(v, 3) for k, v in seconds.items()}
    seconds["total"] = round(sum(seconds.values()), 3)
    return ctx.record(
        planned,
        "ok",
        output=str(planned.output),
        shape_out=[c, scale * h, scale * w],
        sam_weight=weight,
        seconds=seconds,
    )


def finish_stage(
    options: InferOptions, high: torch.Tensor, low: torch.Tensor | None, lr: torch.Tensor
) -> tuple[torch.Tensor, float | None]:
    """A scene's result from its coarse ×s output (and its ×s/2 one for ``dual``), clipped per ``options.clip``,
    with the fine stage's SAM weight. Both coarse results are clipped before the fine stage, as the published
    test script does; ``backproject`` projects onto the LR input itself."""
    if options.stage == "coarse":
        return (high.clamp(0, 1) if options.clip else high), None
    guide = low.clamp(0, 1) if low is not None else lr
    sr, weights = backproject_with_weights(high.clamp(0, 1), guide)
    return (sr.clamp(0, 1) if options.clip else sr), float(weights[0])


@dataclass
class Stages:
    """One LR cube super-resolved: the clipped coarse result and, for the fine stages, the refined one."""

    coarse: torch.Tensor
    fine: torch.Tensor | None
    sam_weight: float | None


class Upscaler:
    """What :func:`run_archive` computes for one in-memory scene, for callers that want the tensors (``eval``,
    ``demo``): ``Upscaler(options)(lr)`` → :class:`Stages`. Close it (or use it as a context manager)."""

    def __init__(self, options: InferOptions) -> None:
        self.options = options
        self.pool = EnginePool(options.engine)
        self.engine = TileEngine(self.pool, options, lambda _event: None)

    def __call__(self, lr: torch.Tensor) -> Stages:
        options, scale = self.options, self.options.scale
        device = self.pool.backend(scale, lr.shape[0]).device
        cube = lr.to(device)
        (high,) = self.engine.coarse(scale, [cube], ["scene"])
        if options.stage == "coarse":
            return Stages(high.clamp(0, 1), None, None)
        low = self.engine.coarse(scale // 2, [cube], ["scene"])[0] if options.stage == "dual" else None
        fine, weight = finish_stage(options, high, low, cube)
        return Stages(high.clamp(0, 1), fine, weight)

    @property
    def label(self) -> str:
        return self.options.engine.label

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Upscaler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "ArchiveReport",
    "Event",
    "InferOptions",
    "PlannedScene",
    "RunError",
    "SceneContext",
    "Stages",
    "TileEngine",
    "Upscaler",
    "plan_archive",
    "process_scene",
    "run_archive",
    "scene_record",
]
