"""A cluster worker: a long-lived process (a Ray actor; a plain class here, made remote by the driver) whose
backends stay open for every scene it is given. Before any scene it checks its node (:meth:`SceneWorker.prepare`);
then it runs :func:`~dualsr_deploy.infer.pipeline.process_scene` on up to :data:`SLOTS` scenes at once (a threaded
actor: the backends serve one scene at a time, so the next scene is read and the last written meanwhile)."""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

from dualsr_deploy._version import __version__
from dualsr_deploy.data.archive import Archive
from dualsr_deploy.data.formats.chunk_cache import size_from_budget
from dualsr_deploy.data.formats.chunk_writes import set_threads
from dualsr_deploy.errors import WorkerRefusedError
from dualsr_deploy.infer.context import SceneContext
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.infer.pipeline import process_scene
from dualsr_deploy.infer.plan import PlannedScene
from dualsr_deploy.infer.pool import BackendPool
from dualsr_deploy.infer.routes import Router

SLOTS = 2  # scenes a worker holds at once: one uses the backends while the other is read or written


def check_node(where: str, version: str, pool: BackendPool, weights: dict[int, str]) -> None:
    """Refuse a node whose dualsr-deploy ``version`` or weights (scale → SHA-256) are not the driver's."""
    if version != __version__:
        raise WorkerRefusedError(f"{where} runs dualsr-deploy {__version__}, the driver {version}; install the same")
    for scale, sha in weights.items():
        model = pool.model(scale)
        if model.info.sha256 != sha:
            raise WorkerRefusedError(
                f"{where} has other ×{scale} weights ({model.path}, {model.info.sha256[:12]}…) than the driver "
                f"({sha[:12]}…); install the same dualsr-deploy, or pass --weights on a shared path"
            )


def configure_worker(options: InferOptions, threads: int) -> None:
    """A worker process set up as ``run_archive`` sets up the driver's: torch's threads and the threads that compress
    HDF5 chunks (one per CPU Ray gave it), and the HDF5 chunk cache of the products it reads (from the budget)."""
    torch.set_num_threads(threads)
    set_threads(threads)
    size_from_budget(options.budget)


class SceneWorker:
    """One long-lived worker: its backends stay open for every scene it is given."""

    def __init__(self, options: InferOptions, layout: str | None, threads: int) -> None:
        configure_worker(options, threads)  # one thread per CPU Ray gave this worker
        self.threads = threads
        options = dataclasses.replace(options, backend=dataclasses.replace(options.backend, threads=threads))
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.messages: list[str] = []
        self.router = Router(options, say=self.messages.append)
        self.pool = self.router.base.pool
        # the archive's root comes with the driver's checks (prepare); until then nothing may be read
        self.ctx = SceneContext.of(Archive(Path("/nonexistent"), [], layout=layout), self.router, worker=self.name)
        self.engine_lock = threading.Lock()

    def prepare(
        self, version: str, out_dir: str, archive: str, weights: dict[int, str], needs: list[tuple[int, int]]
    ) -> dict[str, Any]:
        """The per-node checks: the same dualsr version and weights as the driver, the archive and the output
        folder seen under the same paths, and the backends the archive needs opened on this worker's device
        (TensorRT plans built for its GPU when the folder has none, refused when built for another). Raises
        :class:`WorkerRefusedError` with the reason."""
        where = f"worker {self.name}"
        check_node(where, version, self.pool, weights)
        if not Path(archive).exists():
            raise WorkerRefusedError(
                f"{where} does not see the archive at {archive}; it must be on storage every node mounts under the "
                "same path"
            )
        # The driver's archive root: what every scene's files must lie in, and what the manifest's paths are
        # relative to (the same fingerprints as a local run's).
        self.ctx.archive.root = Path(archive)
        out = Path(out_dir)
        try:
            with tempfile.NamedTemporaryFile(dir=out, prefix=".dualsr-probe.", suffix=".tmp"):
                pass
        except OSError as exc:
            raise WorkerRefusedError(
                f"{where} cannot write to {out} ({exc}); the output folder must be on storage every node mounts "
                "under the same path"
            ) from exc
        for scale, bands in needs:
            try:
                self.pool.prepare([(scale, bands)])  # the driver's artefacts, verified here; plans built for this GPU
                self.pool.backend(scale, bands)
            except Exception as exc:
                raise WorkerRefusedError(f"{where} cannot open the ×{scale} {bands}-band backend: {exc}") from exc
        device = self.ctx.options.backend.device
        if device.startswith("cuda"):
            device = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
        return {
            "worker": self.name,
            "device": device,
            "threads": self.threads,
            "backends": self.ctx.opened,
            "messages": self.messages[:],
        }

    def process(self, planned: PlannedScene, previous: SceneRecord | None) -> SceneRecord | None:
        """Runs on one of the actor's :data:`SLOTS` threads; the backends are used by one scene at a time."""
        return process_scene(self.ctx, planned, previous, self.engine_lock)


__all__ = ["SLOTS", "SceneWorker", "check_node"]
