"""A cluster run without a shared folder: the archive and ``-o`` are in object storage, and each Ray worker reads its
scenes from the bucket and uploads its outputs there itself (``dualsr infer s3://…/ -o s3://…/ --cluster …``).

The driver lists the archive, holds the output's lock object, decides ``--resume`` from the objects' sizes and
ETags, and hands out scenes as :class:`~dualsr_deploy.data.remote_scenes.SceneGroup` objects (URLs, sizes, ETags),
as a local cluster run hands out planned scenes (the same scheduling, retries after a worker died, Ctrl-C). A
worker (:class:`RemoteSceneWorker`) opens a scene where it is when one object is the scene (a GeoTIFF by GDAL's
ranges, NetCDF/HDF5 by h5py over a block-cached file object) or downloads it into a folder of its own, runs it
as the run's own process would (the same probe, reader, plan and pipeline, hence the same outputs), uploads the
outputs under the prefix, and returns the record naming the uploaded objects. Nothing but that record comes back.

The driver believes no worker's word unchecked: a record must be for the scene it was given, and every uploaded
object it names must lie under the output prefix with the size and ETag it claims (one HEAD each) before it goes
in the manifest. Each node reads its own credentials (environment, profile, instance role; ``AWS_ENDPOINT_URL``),
as the AWS tools do; a worker that does not see the run's lock object (other credentials, another endpoint)
refuses before taking any scene.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from dualsr_deploy._version import __version__
from dualsr_deploy.data.archive import ArchiveEntry
from dualsr_deploy.data.remote import Remote
from dualsr_deploy.data.remote_file import release
from dualsr_deploy.data.remote_ranges import apply_gdal_environment
from dualsr_deploy.data.remote_scenes import SceneGroup
from dualsr_deploy.errors import WorkerRefusedError
from dualsr_deploy.infer.context import SceneContext
from dualsr_deploy.infer.executors.base import Job, Outcome
from dualsr_deploy.infer.executors.ray_driver import (
    ClusterSession,
    RayExecutor,
    _RayRun,
    identity_problem,
    open_cluster,
)
from dualsr_deploy.infer.executors.ray_spec import ClusterSpec, WorkerLayout
from dualsr_deploy.infer.executors.ray_worker import check_node, configure_worker
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.options import Event, InferOptions
from dualsr_deploy.infer.pipeline import process_scene
from dualsr_deploy.infer.plan import PlannedScene, free_bytes, plan_archive, size_text
from dualsr_deploy.infer.remote_output import RemoteOutput, objects_problem
from dualsr_deploy.infer.remote_plan import CACHE_VARIABLE, by_range, work_folder
from dualsr_deploy.infer.remote_scene import Provenance, named, ranged_archive, stage_group, staged_archive, uploaded
from dualsr_deploy.infer.routes import Router
from dualsr_deploy.infer.shards import Shard
from dualsr_deploy.infer.stac import with_item
from dualsr_deploy.stop import StopRequest

CLOSE_TIMEOUT_S = 10.0


class RemoteSceneWorker:
    """A long-lived worker that reads its scenes from object storage and uploads its outputs there (see the module
    docstring); up to :data:`~dualsr_deploy.infer.executors.ray_worker.SLOTS` scenes at once, the backends used by
    one at a time."""

    def __init__(
        self, options: InferOptions, layout: str | None, threads: int, base: str, out_url: str, shard: Shard | None
    ) -> None:
        configure_worker(options, threads)
        self.threads = threads
        backend = replace(options.backend, threads=threads)
        self.options = replace(options, backend=backend, layout=layout, resume=False, overwrite=True)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.messages: list[str] = []
        self.router = Router(self.options, say=self.messages.append)
        self.base = base
        self.sink = RemoteOutput(out_url, shard)
        self.remote_in = Remote.of(base)
        self.engine_lock = threading.Lock()
        self.prepare_lock = threading.Lock()
        self.work: Path | None = None
        apply_gdal_environment()

    def prepare(self, version: str, weights: dict[int, str]) -> dict[str, Any]:
        """The per-node checks (the same dualsr version and weights as the driver, the run's lock object seen
        with this node's credentials), then a work folder of its own, after removing those of this node's workers
        that died. Raises :class:`WorkerRefusedError` with the reason."""
        where = f"worker {self.name}"
        check_node(where, version, self.router.base.pool, weights)
        try:
            seen = self.sink.remote.stat(self.sink.lock_url)
        except Exception as exc:  # refused, unreachable: this node's credentials or endpoint
            raise WorkerRefusedError(f"{where} cannot reach {self.sink.url}: {exc}") from exc
        if seen is None:
            raise WorkerRefusedError(
                f"{where} does not see the run's lock object {self.sink.lock_url}: its credentials or endpoint "
                "(AWS_ENDPOINT_URL) are not the driver's"
            )
        if self.work is None:
            self.work = work_folder("worker")  # and those of this node's workers that died, removed
        device = self.options.backend.device
        if device.startswith("cuda"):
            device = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
        return {"worker": self.name, "device": device, "threads": self.threads, "backends": [], "messages": []}

    def close(self) -> None:
        """The worker's folder on its node, removed at the end of the run (a killed worker's is removed by the next
        one on its node)."""
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    def process(self, group: SceneGroup) -> SceneRecord:
        """One scene, read from where it is, written here, uploaded, removed here; its record names the objects
        (its ``output`` is relative to the output prefix)."""
        assert self.work is not None, "prepare() first"
        folder = Path(tempfile.mkdtemp(prefix="scene.", dir=self.work))
        try:
            record = self._process(group, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            release(group.url)  # the blocks kept of its object, if it was read by range
        record.worker = self.name
        return record

    def _process(self, group: SceneGroup, folder: Path) -> SceneRecord:
        provenance = Provenance.of(group)
        out_local = folder / "out"
        out_local.mkdir()
        staging: Path | None = None
        if by_range(group):
            archive = ranged_archive([group], self.options.layout)
        else:
            staging = folder / "in"
            staging.mkdir()
            free = free_bytes(staging)
            if group.nbytes > free - (64 << 20):
                room = (
                    f"{group.url}: needs {size_text(group.nbytes)} to download and worker {self.name} has "
                    f"{size_text(free)} free in {staging.parent.parent}; set {CACHE_VARIABLE} on the nodes to a "
                    "folder with room"
                )
                return SceneRecord(group.name, group.url, "failed", error=room)
            why = stage_group(self.remote_in, group, staging)
            if why is not None:
                return SceneRecord(group.name, group.url, "failed", error=why)
            archive = staged_archive(staging, [group], self.base, self.options)
        runner = self.router.base.runner
        plan = plan_archive(archive, out_local, self.options, hashes=False, count_tiles=runner.count)
        planned = next((p for p in plan if p.entry.name == group.name), None)
        if planned is None:
            return SceneRecord(group.name, group.url, "failed", error=f"{group.url}: not read as a scene once fetched")
        if planned.action != "run":
            record = SceneRecord(group.name, planned.entry.source, "failed", error=planned.reason)
            return named(record, provenance, staging, self.base)
        ctx = SceneContext.of(archive, self.router, worker=self.name)
        with self.prepare_lock:
            ctx.prepare([planned])
        result = process_scene(ctx, planned, None, self.engine_lock)
        if result is None:  # resume is off on a worker: the driver decided it
            return SceneRecord(group.name, group.url, "failed", error="the worker found nothing to do")
        record = named(result, provenance, staging, self.base)
        if self.options.stac:
            record = with_item(record, self.options.qa, self.options.reference is not None)
        if record.status == "ok" and record.output:
            record = uploaded(record, self.sink, out_local, self.options)
        if record.output is not None:
            record.output = Path(record.output).relative_to(out_local).as_posix()
        return record


class RemoteRayExecutor(RayExecutor):
    """:class:`RayExecutor` for scenes in object storage: ``groups`` by scene name, read from ``base``, uploaded
    under ``sink``."""

    def __init__(
        self,
        session: ClusterSession,
        layout: WorkerLayout,
        *,
        weights: dict[int, str],
        groups: dict[str, SceneGroup],
        base: str,
        sink: RemoteOutput,
    ) -> None:
        super().__init__(session, layout, out_dir=Path(tempfile.gettempdir()), archive_root=Path("/"), weights=weights)
        self.groups, self.base, self.sink = groups, base, sink

    def run(self, job: Job) -> Outcome:
        return _RemoteRayRun(self, job).run()


class _RemoteRayRun(_RayRun):
    worker_class = RemoteSceneWorker

    def __init__(self, executor: RemoteRayExecutor, job: Job) -> None:
        super().__init__(executor, job)
        self.remote = executor
        self.checks = (__version__, executor.weights)

    def _worker_args(self) -> tuple[Any, ...]:
        sink = self.remote.sink
        return (self.options, self.options.layout, self.layout.cpus, self.remote.base, sink.url, sink.shard)

    def _submit(self, actor: Any, planned: PlannedScene) -> Any:
        return actor.process.remote(self.remote.groups[planned.entry.name])

    def _problem(self, record: object, planned: PlannedScene) -> str | None:
        problem = identity_problem(record, planned)
        if problem is not None or not isinstance(record, SceneRecord):
            return problem
        if record.output is not None:
            relative = PurePosixPath(record.output)
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                return f"its output {record.output!r} is not a path under the output prefix"
        if record.status != "ok":
            return None
        if record.output is None or not record.output_objects:
            return "status ok without uploaded outputs"
        return objects_problem(record.output_objects, self.remote.sink.remote, self.remote.sink.url)

    def _closing(self) -> None:
        """Each worker removes its folder on its node; one that does not answer within the time is killed anyway."""
        refs = [actor.close.remote() for actor in self.actors]
        with contextlib.suppress(Exception):
            self.ray.wait(refs, num_returns=len(refs), timeout=CLOSE_TIMEOUT_S)

    def _remove_partial(self, planned: PlannedScene) -> None:
        """Nothing here: a dead worker's folder is on its node (its successor there removes it), and an upload
        it had not completed is not visible under any key."""


def run_on_cluster(
    cluster: ClusterSpec,
    options: InferOptions,
    groups: list[SceneGroup],
    *,
    base: str,
    sink: RemoteOutput,
    router: Router,
    finish: Callable[[SceneRecord], None],
    report: Callable[[Event], None],
    stop: StopRequest,
) -> Outcome:
    """The scenes ``groups`` of a remote archive (``base``) on the cluster's workers, each record handed to
    ``finish`` once its outputs are uploaded and checked."""
    with contextlib.ExitStack() as stack:
        how = f"; they read the scenes from {base} and upload to {sink.url} themselves"
        session, layout, options = open_cluster(stack, cluster, options, report, how)
        weights = {scale: router.base.pool.model(scale).info.sha256 for scale in options.scales}
        todo = [PlannedScene(ArchiveEntry(g.name, Path(g.scene), origin=g.url), "run") for g in groups]
        executor = RemoteRayExecutor(
            session, layout, weights=weights, groups={g.name: g for g in groups}, base=base, sink=sink
        )
        return executor.run(Job(options, todo, {}, finish, report, stop))


__all__ = ["RemoteRayExecutor", "RemoteSceneWorker", "run_on_cluster"]
