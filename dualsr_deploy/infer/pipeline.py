"""One scene start to end: hash and read (:func:`load_scene`), coarse SR and the fine stage (:func:`compute`), write
atomically (:func:`write_result`).
:func:`process_scene` chains them for one scene, as a cluster worker runs it; the local executor runs the steps on
its reader, compute and writer threads. A scene too large to hold goes to :mod:`dualsr_deploy.infer.streaming`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.atomic import free_bytes, no_space
from dualsr_deploy.data.formats import write_scene, writing
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.errors import RUN_ERRORS, SCENE_ERRORS, DualSRError
from dualsr_deploy.infer.compute import compute_scene, output_scene, plan_segments
from dualsr_deploy.infer.consistency import CONSISTENCY_ATTR, scene_consistency
from dualsr_deploy.infer.context import SceneContext, output_meta
from dualsr_deploy.infer.manifest import SceneRecord, fingerprint, output_problem, scene_digest
from dualsr_deploy.infer.plan import PlannedScene, remove_outputs, space_problem
from dualsr_deploy.infer.quality import qa_path, reach
from dualsr_deploy.infer.records import SceneFacts, quality, quality_counts
from dualsr_deploy.infer.reference import bicubic_cube, reference_path
from dualsr_deploy.infer.streaming import stream_scene


@dataclass
class LoadedScene:
    """A planned scene after reading: ``skip`` (done in an earlier run), its LR ``scene`` (in-memory scenes), or
    the ``error`` that kept it from being read or prepared for."""

    planned: PlannedScene
    skip: bool = False
    scene: Scene | None = None
    error: str | None = None
    read_seconds: float = 0.0
    fatal: Exception | None = None  # what stops the run (RUN_ERRORS), met while preparing for the scene


@dataclass
class Result:
    """A computed scene, ready to write: its record (completed by :func:`write_result`), path, cube, attrs and
    the units to write it in."""

    record: SceneRecord
    path: Path
    scene: Scene
    attrs: dict[str, str]
    units: str = "source"
    qa: Scene | None = None  # the quality layer to write beside the output (--qa)
    zarr_format: int | None = None
    reference: Scene | None = None  # the bicubic reference to write beside the output (--reference bicubic)


def load_scene(ctx: SceneContext, planned: PlannedScene, previous: SceneRecord | None) -> LoadedScene:
    """Hash the input, decide a ``resume`` skip (``previous``: the scene's last ``ok`` record: skipped when the
    input is the same and its output is still what was written), and read an in-memory scene (a streamed one is read
    strip by strip later)."""
    started = time.perf_counter()
    try:
        return _load_scene(ctx, planned, previous, started)
    except SCENE_ERRORS as exc:  # whatever a hostile file raises is this scene's, never the reader thread's death
        item = LoadedScene(planned, error=f"{type(exc).__name__}: {exc}")
        item.read_seconds = time.perf_counter() - started
        return item


def _load_scene(ctx: SceneContext, planned: PlannedScene, previous: SceneRecord | None, started: float) -> LoadedScene:
    try:
        digest, files = scene_digest(ctx.archive, planned.entry)
        planned = replace(planned, digest=digest, input_files=tuple(files))
    except DualSRError as exc:  # the scene cannot be opened: its read below says why
        planned = replace(planned, reason=f"cannot fingerprint the input: {exc}")
    except OSError as exc:
        planned = replace(planned, reason=f"cannot hash the input: {exc}")
    item = LoadedScene(planned)
    if previous is not None and planned.digest is not None and previous.input_sha256 == planned.digest:
        problem = output_problem(previous)
        if problem is None and (planned.output is None or not planned.output.exists()):
            problem = f"no {planned.output.name if planned.output else 'output'} in the output folder"
        if problem is None:
            item.skip = True
            return item
        why = f"redone by --resume: {problem}"
        item.planned = planned = replace(planned, reason=f"{planned.reason}; {why}" if planned.reason else why)
    if planned.output is not None:  # free space shrinks as the run writes: checked again before the scene starts
        item.error = space_problem(planned.entry, ctx.options, planned.mode == "streamed", planned.output.parent)
    if item.error is None and planned.mode == "memory":
        try:
            with ctx.archive.open(planned.entry) as reader:
                item.scene = reader.load(ctx.options.normalise, masking=ctx.options.masking)
            if planned.entry.origin is not None:  # a staged copy: its outputs name where it lives
                item.scene = replace(item.scene, meta=item.scene.meta.replace(origin=planned.entry.origin))
        except (DualSRError, OSError) as exc:
            item.error = str(exc)
        except SCENE_ERRORS as exc:
            item.error = f"{planned.entry.path}: {type(exc).__name__}: {exc}"
    if item.scene is not None:  # its segments' artefacts, here on the reader's side, not while tiles wait
        try:
            ctx.for_scene(planned).prepare_scene(item.scene)
        except RUN_ERRORS as exc:
            item.fatal = exc
        except SCENE_ERRORS as exc:
            item.error = f"{type(exc).__name__}: {exc}"
    item.read_seconds = time.perf_counter() - started
    return item


def compute(ctx: SceneContext, item: LoadedScene) -> Result:
    """Coarse SR and the fine stage of an in-memory scene (:func:`~dualsr_deploy.infer.compute.compute_scene`,
    with the weights and backends chosen for it): what to write."""
    route = ctx.for_scene(item.planned)
    scene, options = item.scene, route.options
    assert scene is not None
    device = route.pool.backend(options.scale, max(b - a for a, b in plan_segments(scene)[0])).device
    done = compute_scene(route.runner, options, scene, device)
    seconds = {"read": item.read_seconds, **done.seconds}
    result = output_scene(scene, done.result.cpu().numpy(), options.scale, output_meta(scene.meta, options.scale))
    return _result(route, item, result, done.sam_weight, seconds)


def _result(
    ctx: SceneContext, item: LoadedScene, scene: Scene, weight: float | None, seconds: dict[str, float]
) -> Result:
    """What to write for a computed in-memory scene: its output, record and quality layer."""
    lr = item.scene
    assert item.planned.output is not None
    assert lr is not None
    facts = SceneFacts.of_scene(lr)
    if ctx.options.units == "source":
        facts.clipped = scene.out_of_range()
    if ctx.options.clip:
        facts.ceiling, facts.factor = scene.at_ceiling(), lr.meta.scale_factor
    qa = None
    if ctx.options.qa:
        qa = quality(lr.valid, lr.cube.shape[1:], scene, ctx.options.scale, reach(ctx.pool, ctx.options))
    t = time.perf_counter()
    faithful = scene_consistency(
        lr.cube, lr.valid, lr.good, scene.cube, ctx.options.scale, lr.meta.scale_factor, ctx.options.budget // 8
    )
    seconds["consistency"] = time.perf_counter() - t
    record = ctx.finished(
        item.planned,
        facts,
        shape_out=list(scene.cube.shape),
        sam_weight=weight,
        seconds=seconds,
        qa=quality_counts(qa) if qa is not None else None,
        consistency=faithful,
    )
    options = ctx.options
    reference = None
    if options.reference == "bicubic":
        up = bicubic_cube(lr.cube, lr.valid, options.scale, options.clip, lr.meta.band_floor)
        reference = output_scene(lr, up, options.scale, scene.meta)
    path = item.planned.output
    attrs = ctx.output_attrs()
    if faithful is not None:  # in the output's provenance, as a streamed scene's are
        attrs[CONSISTENCY_ATTR] = json.dumps(faithful, sort_keys=True)
    return Result(record, path, scene, attrs, options.units, qa, options.zarr_format, reference)


def write_result(result: Result) -> SceneRecord:
    """Write one finished scene atomically; a failure is this scene's, recorded in what is returned."""
    record = result.record
    started = time.perf_counter()
    layer = f"writing {result.path}"
    layer_attrs = {k: v for k, v in result.attrs.items() if k != CONSISTENCY_ATTR}  # the output's figures, not theirs
    written: list[Path] = []  # what this attempt wrote (each file atomically), removed again if a later one fails
    try:
        if writing(result.path).uncompressed:  # its size is the cube's: refuse before writing a byte
            itemsize = np.dtype(result.scene.meta.dtype if result.units == "source" else np.float32).itemsize
            needed = result.scene.cube.size * itemsize
            if needed > free_bytes(result.path.parent):
                raise no_space(result.path, needed)
        write_scene(result.path, result.scene, attrs=result.attrs, units=result.units, zarr_format=result.zarr_format)
        written.append(result.path)
        if result.qa is not None:
            layer = f"writing the quality layer {qa_path(result.path)}"
            qa = qa_path(result.path)
            write_scene(qa, result.qa, attrs=layer_attrs, units="source", zarr_format=result.zarr_format)
            written.append(qa)
        if result.reference is not None:
            layer = f"writing the bicubic reference {reference_path(result.path)}"
            attrs = {**layer_attrs, "stage": "bicubic interpolation (MATLAB imresize), the reference"}
            write_scene(
                reference_path(result.path), result.reference, attrs=attrs, units=result.units,
                zarr_format=result.zarr_format,
            )  # fmt: skip
        fingerprint(record)
    except Exception as exc:  # any failure is this scene's, never the run's
        text = str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and "MiB free" not in text:
            text = f"{text} ({free_bytes(result.path.parent) / 2**20:.1f} MiB free)"
        record.status, record.error, record.output = "failed", f"{layer}: {text}", None
        for path in written:  # an output is not left beside a failed record (what was there before stays, unless
            remove_outputs(path)  # this attempt had replaced it already)
    record.seconds["write"] = round(time.perf_counter() - started, 3)
    record.seconds["total"] = round(sum(v for k, v in record.seconds.items() if k != "total"), 3)
    return record


def streamed(ctx: SceneContext, planned: PlannedScene) -> SceneRecord:
    """A streamed scene start to end; its failure is in its record."""
    try:
        return fingerprint(stream_scene(ctx.for_scene(planned), planned))
    except SCENE_ERRORS as exc:  # stream_scene removed what it had committed
        return ctx.record(planned, "failed", error=f"{type(exc).__name__}: {exc}")


def process_scene(
    ctx: SceneContext,
    planned: PlannedScene,
    previous: SceneRecord | None,
    engine_lock: contextlib.AbstractContextManager[Any] | None = None,
) -> SceneRecord | None:
    """One scene start to end in this process (what a cluster worker runs): hash, read, compute, write. Returns
    its record, or None when ``resume`` finds it done (``previous``: see :func:`load_scene`). A scene's failure is
    in its record; only what kills the process escapes.

    ``engine_lock`` is held while the scene uses the backends (the whole of a streamed scene), so that callers on
    several threads overlap one scene's reading and writing with another's compute, as the local executor does
    with its reader and writer threads."""
    lock = engine_lock if engine_lock is not None else contextlib.nullcontext()
    item = load_scene(ctx, planned, previous)
    if item.skip:
        return None
    if item.fatal is not None:  # on a worker, the scene's: the driver's own preparation met it first
        return ctx.record(item.planned, "failed", error=f"{type(item.fatal).__name__}: {item.fatal}")
    if item.error is not None:
        return ctx.record(item.planned, "failed", error=item.error)
    with lock:
        if item.planned.mode == "streamed":
            return streamed(ctx, item.planned)
        try:
            result = compute(ctx, item)
        except SCENE_ERRORS as exc:
            return ctx.record(item.planned, "failed", error=f"{type(exc).__name__}: {exc}")
    item.scene = None  # the LR cube: not needed while writing
    return write_result(result)


__all__ = ["LoadedScene", "Result", "compute", "load_scene", "process_scene", "streamed", "write_result"]
