"""``run_archive``: super-resolve every scene of an archive, any size, with any backend, losing nothing.

The data path, one module per step (see docs/explanation/architecture.md)::

    options → plan → executor ─┬─ local: reader thread → compute → writer thread
                               └─ Ray: workers, each running the same per-scene pipeline
    per scene (pipeline): read → coarse SR in batched tiles (batching, pool) → fine stage (fine) → write
    a scene over the memory budget: streaming (strips through the same tiles and fine stage)

- **Nothing lost.** Outputs are atomic (temporary name, then rename); ``OUT/manifest.jsonl`` gets one line per
  scene (input hash, output, backend, timings, status) as it ends; a failing scene is recorded and the run goes
  on; Ctrl-C finishes the scenes in hand and stops (a second one abandons them); ``resume`` skips scenes whose
  last record is ``ok`` with the same input hash and whose output is still there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dualsr_deploy.atomic import STALE_PATTERN, temp_pattern
from dualsr_deploy.data.archive import Archive, SkippedFile, open_archive
from dualsr_deploy.data.formats.chunk_cache import cache_size, set_cache_size, size_from_budget
from dualsr_deploy.data.formats.chunk_writes import set_threads
from dualsr_deploy.data.remote import is_url
from dualsr_deploy.data.stac import StacArchive, stac_archive
from dualsr_deploy.errors import RunError
from dualsr_deploy.infer.context import SceneContext
from dualsr_deploy.infer.executors.base import Executor, Job, Outcome
from dualsr_deploy.infer.executors.local import LocalExecutor
from dualsr_deploy.infer.executors.ray_spec import ClusterSpec
from dualsr_deploy.infer.lock import output_lock
from dualsr_deploy.infer.manifest import RunManifest, SceneRecord
from dualsr_deploy.infer.options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    WORK_DIR,
    Event,
    InferOptions,
    scene_work_dir,
)
from dualsr_deploy.infer.plan import PlannedScene, inside, plan_archive, written_files
from dualsr_deploy.infer.pool import BackendPool
from dualsr_deploy.infer.routes import Router
from dualsr_deploy.infer.stac import item_links, with_item, write_catalog
from dualsr_deploy.stop import StopRequest


@dataclass
class ArchiveReport:
    """What :func:`run_archive` did: ``out_dir`` and ``root`` (the archive's folder); ``plan``, every scene's
    :class:`~dualsr_deploy.infer.plan.PlannedScene`; ``records``, the manifest records written by this run, in the
    order scenes ended (:attr:`ok`, :attr:`failed`); ``resumed``, scenes ``--resume`` found done when they were
    read (:attr:`skipped` adds those the plan found done); ``not_scenes``, the files of the archive folder not read
    as scenes, with why; ``backends``, the backends opened; ``interrupted``, whether Ctrl-C stopped it; ``seconds``,
    its wall time; :attr:`exit_code`, the CLI's exit status."""

    out_dir: Path
    plan: list[PlannedScene]
    records: list[SceneRecord] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    backends: list[str] = field(default_factory=list)
    resumed: list[PlannedScene] = field(default_factory=list)
    not_scenes: list[SkippedFile] = field(default_factory=list)  # files of the archive folder not read, with why
    root: Path | None = None
    broken: list[str] = field(default_factory=list)  # work lost beyond any one scene's record (exit 1)
    manifest: Path | None = None  # the manifest file this run appended to (a shard's part with --shard)
    manifest_url: str | None = None  # where that manifest was uploaded (-o s3://…)
    others: int = 0  # scenes of the archive left to other shards (--shard)

    @property
    def ok(self) -> list[SceneRecord]:
        return [r for r in self.records if r.status == "ok"]

    @property
    def failed(self) -> list[SceneRecord]:
        return [r for r in self.records if r.status == "failed"]

    @property
    def skipped(self) -> list[PlannedScene]:
        """Scenes done by an earlier run (``resume``), found so in planning (dry run) or by the reader."""
        return [p for p in self.plan if p.action == "skip"] + self.resumed

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed or self.broken else EXIT_OK


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
    scenes are given to workers on a Ray cluster, with the same outputs, manifest and ``resume``.

    Returns the report (its ``exit_code``: 0 all done, 1 some scene failed, 130 interrupted). Raises
    :class:`RunError` only for what stops the whole run before it starts.
    """
    options = options or InferOptions()
    report = progress or (lambda _event: None)
    stac = _stac_source(source, options)
    if is_url(source) or is_url(out_dir) or (stac is not None and stac.remote):  # object storage or HTTP(S)
        from dualsr_deploy.infer.remote import run_remote

        result: ArchiveReport = run_remote(
            source, out_dir, options, report=report, dry_run=dry_run, stac=stac, cluster=cluster
        )
        return result
    out = Path(out_dir)
    shard = options.shard
    if stac is not None:  # an ItemCollection or catalog whose assets are local files
        archive = stac_archive(stac, options.root, options.layout)
    else:
        archive = open_archive(
            source, key=options.key, layout=options.layout, root=options.root, select=shard.owns if shard else None
        )
    _check_output_folder(source, out, archive, options, dry_run)
    if shard is not None:
        origin = f" ({shard.origin})" if shard.origin else ""
        report(
            Event(
                "message",
                text=f"shard {shard.text}{origin}: {len(archive.entries)} of {len(archive.entries) + archive.others} "
                "scenes; the others are the other shards'",
            )
        )
    with contextlib.ExitStack() as stack:
        stack.callback(set_cache_size, cache_size())  # HDF5 products read with a chunk cache for the run
        size_from_budget(options.budget)  # (dualsr_deploy.data.formats.chunk_cache), as it was again after it
        make_executor: Callable[[BackendPool], Executor] | None = None
        if cluster is not None and not dry_run:
            options, make_executor = _on_cluster(stack, cluster, options.for_cluster(), out, archive, report)
        router = Router(options, report=report, say=lambda text: report(Event("message", text=text)))
        stack.callback(router.close)
        _use_threads(stack, options.backend.cpu_threads)
        for scale in options.scales:
            router.base.pool.model(scale)  # missing or mismatched weights stop the run before anything is written
        plan = plan_archive(
            archive, out, options, hashes=dry_run and options.resume, count_tiles=router.base.runner.count
        )
        manifest = RunManifest(out, shard)
        result = ArchiveReport(
            out,
            plan,
            not_scenes=list(archive.skipped),
            root=archive.root,
            manifest=manifest.path,
            others=archive.others,
        )
        todo = [p for p in plan if p.action == "run"]
        report(Event("plan", count=len(todo), total=sum(p.tiles for p in todo)))
        if dry_run:
            return result
        lock_notes: list[str] = []
        stack.enter_context(output_lock(out, lock_notes, shard))  # makes the folder; one run (or shard) at a time
        for text in lock_notes:
            report(Event("message", text=text))
        ctx = SceneContext.of(archive, router)
        ctx.prepare(todo, for_workers=make_executor is not None)  # prepare, then run, for either executor
        executor = make_executor(router.base.pool) if make_executor is not None else LocalExecutor(ctx)
        if options.resume and shard is None:  # the lock is ours: temporary files here belong to no live run
            _clean_stale(out)
        elif options.resume:  # other shards may be writing beside us: only our scenes' temporary files
            _clean_stale_of(plan, options)

        def finish(record: SceneRecord) -> None:
            if options.stac:
                record = with_item(record, options.qa, options.reference is not None)
            manifest.append(record)
            result.records.append(record)
            report(Event("done", record.name, record=record))

        for planned in plan:
            if planned.action == "fail":
                finish(SceneRecord(planned.entry.name, planned.entry.source, "failed", error=planned.reason))
        stop = StopRequest()
        job = Job(options, todo, manifest.completed() if options.resume else {}, finish, report, stop)
        started = time.perf_counter()
        outcome = Outcome()
        try:
            with stop.installed():
                outcome = executor.run(job)
        finally:
            result.seconds = time.perf_counter() - started
            result.backends, result.interrupted, result.resumed = outcome.backends, outcome.interrupted, outcome.resumed
            result.broken = list(outcome.broken)
            if options.stac and shard is None:  # shards leave it to dualsr manifest merge
                write_catalog(out, item_links(out, manifest.completed().values()))
            if shard is None:
                shutil.rmtree(out / WORK_DIR, ignore_errors=True)
            else:  # other shards' scenes may be streaming beside ours
                for planned in todo:
                    assert planned.output is not None
                    shutil.rmtree(scene_work_dir(planned.output, planned.entry.name), ignore_errors=True)
    return result


def _stac_source(source: str | os.PathLike[str], options: InferOptions) -> StacArchive | None:
    """The scenes of a STAC ItemCollection, catalog or Item given as the archive (None: not STAC)."""
    from dualsr_deploy.data.stac import is_stac, read_stac

    if not is_stac(source):
        return None

    def fetch(url: str) -> bytes:
        from dualsr_deploy.data.remote import Remote

        return Remote.of(url).read_bytes(url)

    stac = read_stac(os.fspath(source), fetch, options.root)
    if stac.remote and not all(is_url(scene.href) for scene in stac.scenes):
        raise RunError(f"{source}: its Items name both local files and remote objects; give them as two archives")
    if not stac.scenes and not stac.failed:
        raise RunError(f"{source}: a STAC document with no Items")
    if options.shard is not None:
        stac.scenes = [scene for scene in stac.scenes if options.shard.owns(scene.name)]
        stac.failed = [item for item in stac.failed if options.shard.owns(item[0])]
    return stac


def _use_threads(stack: contextlib.ExitStack, threads: int) -> None:
    """torch's intra-op threads for this run, and the threads that compress HDF5 chunks
    (:mod:`dualsr_deploy.data.formats.chunk_writes`), as they were again after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    stack.callback(torch.set_num_threads, before)
    stack.callback(set_threads, set_threads(threads))


def _check_output_folder(
    source: str | os.PathLike[str], out: Path, archive: Archive, options: InferOptions, dry_run: bool
) -> None:
    folder = Path(source) if Path(source).is_dir() else archive.root  # --root widens what links reach, not this
    if out.resolve() == folder.resolve():
        raise RunError(f"{out}: the output folder is the archive's own folder; choose another -o")
    if Path(source).is_dir() and inside(out, folder):
        raise RunError(
            f"{out} lies inside the archive folder {folder}: its outputs would be read as scenes by the next "
            "run (or --resume); choose an -o outside it"
        )
    manifest = RunManifest(out, options.shard)
    if manifest.exists() and not (options.resume or options.overwrite) and not dry_run:
        raise RunError(
            f"{out} holds an earlier run ({manifest.path.name}); --resume to continue it, --overwrite to redo "
            "every scene, or choose another -o"
        )


def _on_cluster(
    stack: contextlib.ExitStack,
    cluster: ClusterSpec,
    options: InferOptions,
    out: Path,
    archive: Archive,
    report: Callable[[Event], None],
) -> tuple[InferOptions, Callable[[BackendPool], Executor]]:
    """Connect to the cluster, lay its workers out, and return the options its workers run with (their device
    and memory budget) and a maker of the Ray executor, given the driver's pool (for the weights' hashes; the
    artefacts were prepared by the driver before, once, not by every worker)."""
    from dualsr_deploy.infer.executors.ray_driver import RayExecutor, open_cluster

    session, layout, options = open_cluster(stack, cluster, options, report)

    def make(pool: BackendPool) -> RayExecutor:
        return RayExecutor(
            session,
            layout,
            out_dir=out,
            archive_root=archive.root,
            weights={scale: pool.model(scale).info.sha256 for scale in options.scales},
        )

    return options, make


def _clean_stale_of(plan: list[PlannedScene], options: InferOptions) -> None:
    """A shard's :func:`_clean_stale`: the temporary files and work folders of its own scenes only."""
    for planned in plan:
        if planned.output is None:
            continue
        shutil.rmtree(scene_work_dir(planned.output, planned.entry.name), ignore_errors=True)
        for written in written_files(planned.output, options.qa, options.reference is not None):
            for stale in written.parent.glob(temp_pattern(written.name)):
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)


def _clean_stale(out_dir: Path) -> None:
    """Temporary files a killed run left (atomic writes, streamed intermediates)."""
    shutil.rmtree(out_dir / WORK_DIR, ignore_errors=True)
    for stale in out_dir.rglob(STALE_PATTERN):  # files and staging folders this package made; none of the user's
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


__all__ = ["ArchiveReport", "run_archive"]
