"""``run_archive`` with an archive or an output folder in object storage or on HTTP(S) (see
:mod:`dualsr_deploy.data.remote`).

- **In.** The listing is sorted into scenes by the local walk's rules; scenes are staged (downloaded with the
  objects read with them) in windows of at most half the staging budget, the next window downloading while the
  current one computes, and each window is removed when its scenes have ended. A window is run as a local archive
  would be (the same probe, reader, confinement, plan, pipeline), so outputs are bit-identical to a local run of
  the same files, and records differ only in paths (``input`` is the URL; every input file also records the object's
  ETag). A scene whose objects cannot be read is that scene's failure (404, 403, a changed size), the run goes on.
- **Out.** ``-o s3://bucket/prefix/``: each scene is written to a local folder of the run, uploaded object by
  object (a PUT or a completed multipart upload: nothing half-written is ever visible under the final key), then
  recorded with the uploaded objects' URL, size, SHA-256 and ETag (``output_objects``), then removed locally. The
  manifest (``manifest.jsonl``, or a shard's part) is uploaded after every record. The lock is an object
  (``.dualsr.lock``) written only where none is (S3's conditional write), refreshed each minute, and taken over once
  it is ten minutes old, or at once when its holder ran on this machine and is gone (a run that died).
- **Resume** decides before anything is downloaded: a scene is done when its last record is ``ok``, every input
  object it was read from has the size and ETag recorded, and every output object (or local output file) still has
  the size and ETag (SHA-256) recorded.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dualsr_deploy.data.archive import ArchiveEntry, SkippedFile, open_archive
from dualsr_deploy.data.remote import Remote, is_url
from dualsr_deploy.data.remote_file import release
from dualsr_deploy.data.remote_ranges import apply_gdal_environment
from dualsr_deploy.data.remote_scenes import RemoteScenes, SceneGroup
from dualsr_deploy.data.stac import StacArchive, stac_archive
from dualsr_deploy.errors import RemoteError, RunError
from dualsr_deploy.infer.context import SceneContext
from dualsr_deploy.infer.executors.base import Job, Outcome
from dualsr_deploy.infer.executors.local import LocalExecutor
from dualsr_deploy.infer.executors.ray_spec import ClusterSpec
from dualsr_deploy.infer.lock import output_lock
from dualsr_deploy.infer.manifest import RunManifest, SceneRecord, output_problem, scene_digest
from dualsr_deploy.infer.options import Event, InferOptions
from dualsr_deploy.infer.plan import PlannedScene, free_bytes, plan_archive, size_text
from dualsr_deploy.infer.remote_output import RemoteOutput, catalog_hrefs, objects_problem
from dualsr_deploy.infer.remote_plan import (
    CACHE_VARIABLE,
    by_range,
    dry_plan,
    from_stac,
    inputs_hold,
    list_scenes,
    stage_budget,
    work_folder,
)
from dualsr_deploy.infer.remote_scene import Provenance, named, ranged_archive, stage_group, staged_archive, uploaded
from dualsr_deploy.infer.routes import Router
from dualsr_deploy.infer.stac import item_links, with_item, write_catalog
from dualsr_deploy.stop import StopRequest


@dataclass
class _Window:
    folder: Path
    groups: list[SceneGroup]
    failed: dict[str, str]  # scene name → why it could not be staged


def run_remote(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: InferOptions,
    *,
    report: Callable[[Event], None],
    dry_run: bool,
    stac: StacArchive | None = None,
    cluster: ClusterSpec | None = None,
) -> Any:
    """See the module docstring; called by :func:`~dualsr_deploy.infer.run.run_archive`, whose report it returns.
    With ``cluster``, Ray's workers read the scenes and upload the outputs themselves
    (:mod:`~dualsr_deploy.infer.executors.ray_remote`)."""
    from dualsr_deploy.infer.run import ArchiveReport

    source_text, out_text = os.fspath(source), os.fspath(out_dir)
    shard = options.shard
    remote_source = stac.remote if stac is not None else is_url(source_text)
    if cluster is not None and not (remote_source and is_url(out_text)):
        raise RunError(
            "--cluster with object storage reads and writes it from the workers: both the archive and -o must be "
            "there (s3://, gs://, az://; the archive may also be http(s)://). With a folder every node mounts, give "
            "local paths for both; or run one process per machine with --shard I/N (docs/how-to/schedulers.md)"
        )
    if cluster is not None:  # the workers run torch, whatever auto chose here (as run_archive's local path does)
        options = options.for_cluster()
    with contextlib.ExitStack() as stack:
        work = work_folder("remote")  # and the folders of runs on this host that were killed, removed
        stack.callback(shutil.rmtree, work, True)
        stack.callback(release)  # the blocks kept of objects read by range
        sink = RemoteOutput(out_text, shard) if is_url(out_text) else None
        out_local = work / "out" if sink is not None else Path(out_text)
        if sink is not None:
            out_local.mkdir()
        if stac is not None and stac.remote:
            stac_remote = Remote.of(stac.scenes[0].href)
            remote_in: Remote | None = stac_remote
            listing_scenes: RemoteScenes | None = from_stac(stac_remote, stac)
        else:
            remote_in = Remote.of(source_text) if is_url(source_text) and stac is None else None
            listing_scenes = list_scenes(remote_in, source_text, work, shard) if remote_in is not None else None
        exists = sink.exists() if sink is not None else RunManifest(out_local, shard).exists()
        if exists and not (options.resume or options.overwrite) and not dry_run:
            raise RunError(
                f"{out_text} holds an earlier run (its manifest); --resume to continue it, --overwrite to redo every "
                "scene, or choose another -o"
            )
        router = Router(options, report=report, say=lambda text: report(Event("message", text=text)))
        stack.callback(router.close)
        for scale in options.scales:
            router.base.pool.model(scale)
        manifest = RunManifest(out_local, shard)
        result = ArchiveReport(out_local, [], manifest=manifest.path)
        if sink is not None:
            result.manifest_url = sink.url + sink.manifest_name
        if listing_scenes is not None:
            result.not_scenes = [SkippedFile(Path(relative), why) for relative, why in listing_scenes.skipped]
        if dry_run:
            result.plan = dry_plan(listing_scenes, source_text, out_local, options, router, stac)
            report(Event("plan", count=sum(p.action == "run" for p in result.plan), total=0))
            return result
        notes: list[str] = []
        if sink is not None:
            stack.enter_context(sink.locked(notes))
            if options.resume or options.overwrite:  # continued, or redone: the earlier records stay in it
                sink.download_manifests(out_local)
        else:
            stack.enter_context(output_lock(out_local, notes, shard))
        for text in notes:
            report(Event("message", text=text))
        done = manifest.completed() if options.resume else {}
        state = _RunState(options, manifest, sink, out_local, result, report, remote_in)
        stop = StopRequest()
        started = time.perf_counter()
        try:
            with stop.installed():
                if listing_scenes is None:
                    _run_local_source(state, source_text, done, stop, router, stac)
                else:
                    assert remote_in is not None
                    todo = _todo(state, listing_scenes, done)
                    if cluster is not None:
                        assert sink is not None
                        _run_cluster(state, cluster, todo, sink, stop, router)
                    else:
                        _run_windows(state, remote_in, todo, work, stop, router)
        finally:
            result.seconds = time.perf_counter() - started
            if options.stac and shard is None:
                _catalog(state, sink, out_local)
    return result


def _catalog(state: _RunState, sink: RemoteOutput | None, out_local: Path) -> None:
    """The run's STAC Catalog, of every scene done in the folder (this run's and earlier ones')."""
    records = state.manifest.completed().values()
    if sink is None:
        write_catalog(out_local, item_links(out_local, records))
        return
    path = write_catalog(out_local, catalog_hrefs(sink.url, records))
    if path is not None:
        try:
            sink.remote.put(path, sink.url + path.name)
        except RemoteError as error:
            state.result.broken.append(f"the STAC catalog could not be uploaded ({error})")


class _RunState:
    """What every window of one run shares: where records go, and how (upload first, then the manifest)."""

    def __init__(
        self,
        options: InferOptions,
        manifest: RunManifest,
        sink: RemoteOutput | None,
        out_local: Path,
        result: Any,
        report: Callable[[Event], None],
        remote_in: Remote | None,
    ) -> None:
        self.options, self.manifest, self.sink, self.out_local = options, manifest, sink, out_local
        self.result, self.report, self.remote_in = result, report, remote_in
        self.identities: dict[str, dict[str, tuple[int | None, str | None]]] = {}  # scene → relative → (size, id)
        self.urls: dict[str, str] = {}  # scene → its URL
        self.base = ""  # the remote archive's folder (a URL ending in /)
        self.staging: Path | None = None  # the window being run (its local copies)

    def finish(self, record: SceneRecord, *, by_worker: bool = False) -> None:
        """Record a scene that ended: its outputs uploaded first (``by_worker``: a cluster worker did that, and
        named the objects; its record's output is relative to the output folder), then the manifest."""
        if not by_worker:
            url = self.urls.get(record.name)
            provenance = Provenance(url, self.identities.get(record.name, {})) if url is not None else None
            record = named(record, provenance, self.staging, self.base)
            if self.options.stac:
                record = with_item(record, self.options.qa, self.options.reference is not None)
            if self.sink is not None and record.status == "ok" and record.output:
                record = uploaded(record, self.sink, self.out_local, self.options)
        elif record.output is not None:
            record.output = str(self.out_local / record.output)
        self.manifest.append(record)
        if self.sink is not None:
            try:
                self.sink.upload_manifest(self.manifest.path)
            except RemoteError as error:
                self.result.broken.append(f"the manifest could not be uploaded ({error})")
        self.result.records.append(record)
        self.report(Event("done", record.name, record=record))

    def previous_holds(self, previous: SceneRecord) -> str | None:
        """Why an earlier ``ok`` record's outputs no longer stand (None: they do)."""
        if self.sink is not None:
            if not previous.output_objects:
                return "no uploaded output was recorded"
            return objects_problem(previous.output_objects, self.sink.remote, self.sink.url)
        return output_problem(previous)


def _todo(state: _RunState, scenes: RemoteScenes, done: dict[str, SceneRecord]) -> list[SceneGroup]:
    """The scenes to run: what the listing failed is recorded, what an earlier run did (``--resume``: its objects
    unchanged, its outputs still there as recorded) is skipped before anything is downloaded."""
    state.base = scenes.base
    shard = state.options.shard
    if shard is not None:
        origin = f" ({shard.origin})" if shard.origin else ""
        state.report(
            Event(
                "message",
                text=f"shard {shard.text}{origin}: {len(scenes.groups)} of {len(scenes.groups) + scenes.others} "
                "scenes; the others are the other shards'",
            )
        )
    for name, url, why in scenes.failed:
        state.finish(SceneRecord(name, url, "failed", error=why))
    todo: list[SceneGroup] = []
    for group in scenes.groups:
        previous = done.get(group.name)
        if previous is not None and inputs_hold(previous, group) and state.previous_holds(previous) is None:
            state.result.resumed.append(PlannedScene(ArchiveEntry(group.name, Path(group.scene)), "skip"))
            continue
        todo.append(group)
    state.report(Event("plan", count=len(todo) + len(state.result.resumed), total=0))
    for planned in state.result.resumed:
        state.report(Event("skip", planned.entry.name, count=0))
    for group in todo:
        state.urls[group.name] = group.url
        state.identities[group.name] = {obj.relative: (obj.size, obj.identity) for obj in group.objects}
    return todo


def _run_cluster(
    state: _RunState,
    cluster: ClusterSpec,
    todo: list[SceneGroup],
    sink: RemoteOutput,
    stop: StopRequest,
    router: Router,
) -> None:
    from dualsr_deploy.infer.executors.ray_remote import run_on_cluster

    outcome = run_on_cluster(
        cluster,
        state.options,
        todo,
        base=state.base,
        sink=sink,
        router=router,
        finish=lambda record: state.finish(record, by_worker=True),
        report=state.report,
        stop=stop,
    )
    state.result.backends = sorted({*state.result.backends, *outcome.backends})
    state.result.broken.extend(outcome.broken)
    state.result.interrupted = outcome.interrupted or stop.requested


def _run_windows(
    state: _RunState, remote: Remote, todo: list[SceneGroup], work: Path, stop: StopRequest, router: Router
) -> None:
    ranged = [group for group in todo if by_range(group)]
    if ranged:
        state.report(Event("message", text=f"{len(ranged)} scene(s) read by range from where they are, not downloaded"))
        outcome = _run_ranged(state, ranged, stop, router)
        state.result.backends = sorted({*state.result.backends, *outcome.backends})
        state.result.broken.extend(outcome.broken)
        if outcome.interrupted or stop.requested:
            state.result.interrupted = True
            return
    todo = [group for group in todo if group not in ranged]
    budget = max(1, stage_budget(work) // 2)
    windows: list[list[SceneGroup]] = []
    for group in todo:  # a scene of unknown size (an HTTP listing without sizes) is a window of its own
        known = not any(obj.size is None for obj in group.objects)
        fits = windows and sum(g.nbytes for g in windows[-1]) + group.nbytes <= budget
        if known and fits and not any(obj.size is None for g in windows[-1] for obj in g.objects):
            windows[-1].append(group)
        else:
            windows.append([group])

    def fetch(index: int) -> _Window:
        folder = work / f"window-{index:05d}"
        folder.mkdir(parents=True)
        failed: dict[str, str] = {}
        size = size_text(sum(group.nbytes for group in windows[index]))
        state.report(
            Event(
                "message", text=f"downloading window {index + 1}/{len(windows)}: {len(windows[index])} scene(s), {size}"
            )
        )
        for group in windows[index]:
            if stop.requested:  # not started: not recorded (--resume runs it), as a local run's unread scenes
                break
            free = free_bytes(folder)
            if group.nbytes > free - (64 << 20):
                failed[group.name] = (
                    f"{group.url}: needs {size_text(group.nbytes)} to download and {folder} has {size_text(free)} "
                    f"free; set {CACHE_VARIABLE} to a folder with room"
                )
                continue
            why = stage_group(remote, group, folder)
            if why is not None:
                failed[group.name] = why
        return _Window(folder, windows[index], failed)

    if windows:
        total = sum(group.nbytes for group in todo)
        state.report(
            Event(
                "message",
                text=f"{len(todo)} scene(s), {size_text(total)} to download in {len(windows)} window(s) of at most "
                f"{size_text(budget)}, each while the one before computes",
            )
        )
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dualsr-stage") as pool:
        ahead = pool.submit(fetch, 0) if windows else None
        for index in range(len(windows)):
            assert ahead is not None
            window = ahead.result()
            ahead = pool.submit(fetch, index + 1) if index + 1 < len(windows) and not stop.requested else None
            try:
                outcome = _run_window(state, window, stop, router)
            finally:
                shutil.rmtree(window.folder, ignore_errors=True)
            state.result.backends = sorted({*state.result.backends, *outcome.backends})
            state.result.broken.extend(outcome.broken)
            if outcome.interrupted or stop.requested:
                state.result.interrupted = True
                break
        if ahead is not None:
            with contextlib.suppress(Exception):
                shutil.rmtree(ahead.result().folder, ignore_errors=True)


def _run_ranged(state: _RunState, groups: list[SceneGroup], stop: StopRequest, router: Router) -> Outcome:
    """Scenes read by range where they are (GeoTIFFs by GDAL's windows, ``/vsis3/``, ``/vsicurl/``…; HDF5/NetCDF by
    h5py over a block-cached file object): a streamed scene is never whole on this machine, in memory or on disk."""
    apply_gdal_environment()
    archive = ranged_archive(groups, state.options.layout)
    state.staging = None
    return _run_archive(state, archive, {}, stop, router)


def _run_window(state: _RunState, window: _Window, stop: StopRequest, router: Router) -> Outcome:
    for name, why in window.failed.items():
        state.finish(SceneRecord(name, state.urls.get(name, name), "failed", error=why))
    staged = [g for g in window.groups if g.name not in window.failed and (window.folder / g.scene).exists()]
    if not staged:
        return Outcome()
    state.staging = window.folder
    archive = staged_archive(window.folder, staged, state.base, state.options)
    return _run_archive(state, archive, {}, stop, router)


def _run_local_source(
    state: _RunState,
    source: str,
    done: dict[str, SceneRecord],
    stop: StopRequest,
    router: Router,
    stac: StacArchive | None,
) -> None:
    """A local archive (or a STAC document of local Items) into object storage: one window, the archive itself."""
    options = state.options
    shard = options.shard
    if stac is not None:
        archive = stac_archive(stac, options.root, options.layout)
    else:
        archive = open_archive(
            source, key=options.key, layout=options.layout, root=options.root, select=shard.owns if shard else None
        )
    state.result.not_scenes = list(archive.skipped)
    state.result.root = archive.root
    kept: dict[str, SceneRecord] = {}
    for entry in archive.readable:
        previous = done.get(entry.name)
        if previous is None or state.previous_holds(previous) is not None:
            continue
        try:
            digest, _files = scene_digest(archive, entry)
        except Exception:  # read again by the run, which records why
            continue
        if digest == previous.input_sha256:
            kept[entry.name] = previous
    archive.entries = [e for e in archive.entries if e.name not in kept]
    state.report(Event("plan", count=len(archive.entries) + len(kept), total=0))
    for name in kept:
        state.result.resumed.append(PlannedScene(ArchiveEntry(name, Path(name)), "skip"))
        state.report(Event("skip", name, count=0))
    outcome = _run_archive(state, archive, {}, stop, router)
    state.result.backends, state.result.interrupted = outcome.backends, outcome.interrupted
    state.result.broken.extend(outcome.broken)


def _run_archive(
    state: _RunState, archive: Any, done: dict[str, SceneRecord], stop: StopRequest, router: Router
) -> Outcome:
    """One local archive (a staged window, or a local source) through the local pipeline into the run's folder."""
    options = replace(state.options, resume=False, overwrite=True)
    plan = plan_archive(archive, state.out_local, options, hashes=False, count_tiles=router.base.runner.count)
    state.result.plan.extend(plan)
    for planned in plan:
        if planned.action == "fail":
            state.finish(SceneRecord(planned.entry.name, planned.entry.source, "failed", error=planned.reason))
    todo = [p for p in plan if p.action == "run"]
    if not todo:
        return Outcome()
    ctx = SceneContext.of(archive, router)
    ctx.prepare(todo)
    return LocalExecutor(ctx).run(Job(options, todo, done, state.finish, state.report, stop))


__all__ = ["run_remote"]
