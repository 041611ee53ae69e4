"""``dualsr infer --cluster``: the same archive job on a Ray cluster.

Ray is the engine: its actors are the workers, its scheduler places them, its object refs carry scenes and
records, and its actor restarts bring a dead worker back. What this module adds is the job's own policy:

- **One long-lived worker per GPU**, or per ``worker_cores`` CPU cores (``local:N``: N workers sharing this
  machine's cores). A worker opens its engines once (:class:`~dualsr_deploy.infer.engines.EnginePool`) and keeps
  them for every scene it is given.
- **Per-node checks before any scene.** Each worker checks its dualsr version, the weights' SHA-256 against the
  driver's, that it sees the output folder, and opens the engines the archive needs on its own device. TensorRT
  plans are per GPU architecture (``<graph>.sm<CC>.plan``): a worker builds the plan for its GPU when the folder
  has none, and the plan's manifest is checked against the GPU that loads it (a mismatched plan is refused,
  never loaded). A worker that fails a check is retired with the reason; the others go on.
- **Scenes are tasks**, given to the least busy worker as workers report back (``ray.wait``), up to
  :data:`SLOTS` per worker: a worker is a threaded actor whose engines serve one scene at a time, so the next
  scene is read and the last one written while one computes (on a GPU, writing an HDF5 output takes longer than
  the network). The worker runs the single-machine code for one scene
  (:func:`~dualsr_deploy.infer.run.process_scene`): hash, read, compute, write atomically to the shared output
  folder. The driver alone appends ``manifest.jsonl``, so a cluster run and
  a local run write the same manifest and ``--resume`` one another.
- **Failures.** A scene that fails (bad data, an error in the code) comes back as a ``failed`` record, once. A
  worker process that dies mid-scene (killed, out of memory, a lost node) is restarted by Ray
  (``max_restarts``) and its scene is given to the next free worker, at most ``retries`` times more; then the
  scene is recorded failed with the reason.
- **Stopping.** Ctrl-C or SIGTERM stops handing out scenes, lets the workers finish the ones they hold, and exits
  130; a second Ctrl-C abandons those.

Requirements a cluster brings: every node has the same dualsr-deploy installed, and sees the archive, the output
folder, the engines folder and any ``--weights`` under the same paths (a shared filesystem). Paths are made
absolute on the driver before they are sent.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from dualsr_deploy._version import __version__
from dualsr_deploy.data.archive import Archive
from dualsr_deploy.errors import InputError
from dualsr_deploy.infer.engines import EnginePool
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.run import (
    Event,
    InferOptions,
    PlannedScene,
    RunError,
    SceneContext,
    TileEngine,
    process_scene,
    scene_record,
)
from dualsr_deploy.train.stop import StopRequest

INSTALL_HINT = "pip install 'dualsr-deploy[cluster]'"
DEFAULT_WORKER_CORES = 4
# scenes a worker holds at once: one uses the engines while the other is read or written (a threaded actor)
SLOTS = 2
WAIT_NOTICE_S = 60.0  # say why nothing happens when no worker has started by then (a busy cluster)
_ADDRESS = re.compile(r"ray://[^\s:/]+:\d+")


class ClusterError(RunError):
    """The cluster cannot run the job (Ray missing, no cluster at the address, no worker could start, …)."""


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: ``auto`` (the Ray cluster this machine belongs to), ``ray://HOST:PORT`` (a remote one, through
    Ray Client) or ``local[:N]`` (a Ray instance started here for this run, with N workers).

    ``worker_cores``: CPU cores per worker when workers run on CPU (default: ``local:N`` shares this machine's
    cores among its N workers; otherwise 4). ``retries``: how many more times a scene is given out after the
    worker holding it died. ``device``: the engine device asked for; None lets the cluster decide (``cuda`` when it
    has GPUs).
    """

    text: str
    address: str | None
    workers: int | None = None
    worker_cores: int | None = None
    retries: int = 2
    device: str | None = None

    @property
    def local_workers(self) -> int:
        """``local:N``'s N; plain ``local``: one worker per ``worker_cores`` (default 4) cores of this machine."""
        if self.workers is not None:
            return self.workers
        return max(1, (os.cpu_count() or 1) // (self.worker_cores or DEFAULT_WORKER_CORES))

    @classmethod
    def parse(
        cls, text: str, *, worker_cores: int | None = None, retries: int = 2, device: str | None = None
    ) -> ClusterSpec:
        text = text.strip()
        if worker_cores is not None and worker_cores < 1:
            raise InputError(f"--worker-cores must be at least 1; got {worker_cores}")
        if retries < 0:
            raise InputError(f"--retries must be 0 or more; got {retries}")
        common = {"worker_cores": worker_cores, "retries": retries, "device": device}
        if text == "auto":
            return cls(text, "auto", **common)  # type: ignore[arg-type]
        if _ADDRESS.fullmatch(text):
            return cls(text, text, **common)  # type: ignore[arg-type]
        match = re.fullmatch(r"local(?::(\d+))?", text)
        if match is not None:
            workers = int(match.group(1)) if match.group(1) else None
            if workers is not None and workers < 1:
                raise InputError(f"--cluster local:N needs N ≥ 1; got {text!r}")
            return cls(text, None, workers, **common)  # type: ignore[arg-type]
        raise InputError(
            f"--cluster {text!r}: give auto (the Ray cluster this machine is part of), ray://HOST:PORT (a remote "
            "cluster's client address, port 10001 by default) or local[:N] (N workers on this machine)"
        )


def require_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(f"--cluster runs on Ray, which is not installed here: {INSTALL_HINT}") from exc
    return ray


# --- the worker (a Ray actor; plain class here, made remote at run time) ------------------------------------------


class WorkerRefusedError(Exception):
    """A worker's node cannot run the job (the reason is the message)."""


class SceneWorker:
    """One long-lived worker: its engines stay open for every scene it is given."""

    def __init__(self, options: InferOptions, layout: str | None, threads: int) -> None:
        torch.set_num_threads(threads)
        self.threads = threads
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.messages: list[str] = []
        self.pool = EnginePool(options.engine, say=self.messages.append)
        engine = TileEngine(self.pool, options, lambda _event: None)
        self.ctx = SceneContext(Archive(Path("/"), [], layout=layout), options, self.pool, engine, worker=self.name)
        self.engine_lock = threading.Lock()

    def prepare(
        self, version: str, out_dir: str, archive: str, weights: dict[int, str], needs: list[tuple[int, int]]
    ) -> dict[str, Any]:
        """The per-node checks (see the module docstring); raises :class:`WorkerRefusedError` with the reason."""
        where = f"worker {self.name}"
        if version != __version__:
            raise WorkerRefusedError(
                f"{where} runs dualsr-deploy {__version__}, the driver {version}; install the same"
            )
        if not Path(archive).exists():
            raise WorkerRefusedError(
                f"{where} does not see the archive at {archive}; it must be on storage every node mounts under the "
                "same path"
            )
        out = Path(out_dir)
        try:
            with tempfile.NamedTemporaryFile(dir=out, prefix=".dualsr-probe.", suffix=".tmp"):
                pass
        except OSError as exc:
            raise WorkerRefusedError(
                f"{where} cannot write to {out} ({exc}); the output folder must be on storage every node mounts "
                "under the same path"
            ) from exc
        for scale, sha in weights.items():
            model = self.pool.model(scale)
            if model.info.sha256 != sha:
                raise WorkerRefusedError(
                    f"{where} has other ×{scale} weights ({model.path}, {model.info.sha256[:12]}…) than the driver "
                    f"({sha[:12]}…); install the same dualsr-deploy, or pass --weights on a shared path"
                )
        for scale, bands in needs:
            try:
                self.pool.backend(scale, bands)
            except Exception as exc:
                raise WorkerRefusedError(f"{where} cannot open the ×{scale} {bands}-band engine: {exc}") from exc
        device = self.ctx.options.engine.device
        if device.startswith("cuda"):
            device = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
        return {
            "worker": self.name,
            "device": device,
            "threads": self.threads,
            "engines": self.pool.opened,
            "messages": self.messages[:],
        }

    def process(self, planned: PlannedScene, previous: str | None) -> SceneRecord | None:
        """Runs on one of the actor's :data:`SLOTS` threads; the engines are used by one scene at a time."""
        return process_scene(self.ctx, planned, previous, self.engine_lock)


# --- the driver --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerLayout:
    """How many workers, and what each asks of Ray."""

    count: int
    cpus: int
    gpus: int
    device: str
    memory_budget: int | None  # per worker, when the run gave none


def _alive_nodes(ray: ModuleType) -> list[dict[str, Any]]:
    return [node for node in ray.nodes() if node.get("Alive")]


def layout_workers(spec: ClusterSpec, nodes: list[dict[str, Any]], device: str) -> WorkerLayout:
    """One worker per GPU when running on CUDA, else one per ``worker_cores`` cores of each node (``local:N``: N
    sharing the node's cores); the memory budget (when none was given) is a quarter of the smallest per-worker
    share of a node's memory, as a single-machine run takes a quarter of the machine's."""
    resources = [node.get("Resources", {}) for node in nodes]
    cpus_per_node = [int(r.get("CPU", 0)) for r in resources]
    if device.startswith("cuda"):
        per_node = [int(r.get("GPU", 0)) for r in resources]
        if not sum(per_node):
            raise ClusterError(
                f"the cluster has no GPU for --device {device} (the trt engine always needs one); run with --device "
                "cpu and the torch or onnx engine"
            )
        cpus = max(1, min(int(r.get("CPU", 1)) // g for r, g in zip(resources, per_node, strict=True) if g))
        gpus = 1
    else:
        gpus = 0
        if spec.address is None:  # local[:N]: N workers sharing this machine's cores
            workers = spec.local_workers
            cores = spec.worker_cores or max(1, sum(cpus_per_node) // workers)
        else:  # nodes smaller than the default get one worker with all their cores
            cores = spec.worker_cores or max(1, min(DEFAULT_WORKER_CORES, max(cpus_per_node, default=1)))
        per_node = [n // cores for n in cpus_per_node]
        if spec.address is None:
            per_node = _cap(per_node, spec.local_workers)
        cpus = cores
    shares: list[int] = [int(r.get("memory", 0)) // n for r, n in zip(resources, per_node, strict=True) if n]
    budget = min(shares) // 4 if shares and min(shares) > 0 else None
    count = sum(per_node)
    if not count:
        raise ClusterError(
            f"no node of the cluster has {cores} CPU(s) for a worker (nodes: {', '.join(map(str, cpus_per_node))} "
            "CPUs); lower --worker-cores"
        )
    return WorkerLayout(count, cpus, gpus, "cuda" if gpus else "cpu", budget)


def _cap(per_node: list[int], total: int) -> list[int]:
    out = []
    for n in per_node:
        out.append(min(n, total))
        total -= out[-1]
    return out


@dataclass
class _Holding:
    actor: Any
    planned: PlannedScene
    attempt: int  # how many times a worker died holding it before


@dataclass
class ClusterOutcome:
    interrupted: bool = False
    resumed: list[PlannedScene] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)


class ClusterSession:
    """A connection to a Ray cluster for one run: started here (``local``) or joined, and left as found."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.ray = require_ray()
        self._owned = False

    def __enter__(self) -> ClusterSession:
        ray = self.ray
        if ray.is_initialized():
            return self  # the caller's connection (a notebook, a test): used as it is, not shut down
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        try:
            if self.spec.address is None:
                workers = self.spec.local_workers
                cores = self.spec.worker_cores or max(1, (os.cpu_count() or 1) // workers)
                ray.init(address="local", num_cpus=workers * cores, include_dashboard=False, **quiet)
            else:
                ray.init(address=self.spec.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            hint = (
                "start one with `ray start --head` (and `ray start --address HEAD:6379` on the other nodes), or run "
                "on this machine alone with --cluster local[:N]"
            )
            raise ClusterError(f"cannot reach a Ray cluster at {self.spec.text}: {exc}; {hint}") from exc
        self._owned = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            self.ray.shutdown()

    def nodes(self) -> list[dict[str, Any]]:
        return _alive_nodes(self.ray)

    def default_device(self) -> str:
        """``cuda`` when the cluster has a GPU, else ``cpu``."""
        return "cuda" if any(node.get("Resources", {}).get("GPU", 0) for node in self.nodes()) else "cpu"


def _absolute(options: InferOptions) -> InferOptions:
    engine = options.engine
    engine = replace(
        engine,
        engines_dir=engine.engines_dir.resolve(),
        weights=tuple((s, Path(p).resolve()) for s, p in engine.weights),
    )
    root = options.root.resolve() if options.root is not None else None
    return replace(options, engine=engine, root=root)


def _absolute_scene(planned: PlannedScene) -> PlannedScene:
    entry = replace(planned.entry, path=planned.entry.path.resolve())
    output = planned.output.resolve() if planned.output is not None else None
    return replace(planned, entry=entry, output=output)


def run_on_cluster(
    session: ClusterSession,
    layout: WorkerLayout,
    todo: list[PlannedScene],
    options: InferOptions,
    *,
    out_dir: Path,
    archive_root: Path,
    weights: dict[int, str],
    done: dict[str, SceneRecord],
    finish: Callable[[SceneRecord], None],
    report: Callable[[Event], None],
    stop: StopRequest,
) -> ClusterOutcome:
    """Give ``todo`` to ``layout.count`` workers; see the module docstring."""
    ray = session.ray
    outcome = ClusterOutcome()
    options = _absolute(options)
    todo = [_absolute_scene(p) for p in todo]
    scales = (options.scale, options.scale // 2) if options.stage == "dual" else (options.scale,)
    bands = sorted({p.entry.shape[0] for p in todo if p.entry.shape is not None})
    needs = [(s, c) for s in scales for c in (bands if options.engine.engine != "torch" else bands[:1])]

    actor_class = ray.remote(SceneWorker).options(
        num_cpus=layout.cpus,
        num_gpus=layout.gpus,
        max_restarts=-1,  # Ray brings a dead worker back; each scene's retries are bounded below
        max_task_retries=0,
        max_concurrency=SLOTS,
        scheduling_strategy="SPREAD",
    )
    actors = [actor_class.remote(options, options.layout, layout.cpus) for _ in range(layout.count)]
    checks = (__version__, str(out_dir.resolve()), str(archive_root.resolve()), weights, needs)
    preparing = {actor.prepare.remote(*checks): actor for actor in actors}
    free: dict[Any, int] = {}  # ready workers → scenes they can take now
    holding: dict[Any, _Holding] = {}
    pending = collections.deque((p, 0) for p in todo)
    refusals: list[str] = []
    deaths: dict[str, list[str]] = {}
    starts: dict[Any, int] = {}

    def give_out() -> None:
        while pending and not stop.requested and free:
            actor = max(free, key=lambda a: free[a])  # the least busy worker
            if not free[actor]:
                return
            free[actor] -= 1
            planned, attempt = pending.popleft()
            previous = done.get(planned.entry.name)
            ref = actor.process.remote(planned, previous.input_sha256 if previous is not None else None)
            holding[ref] = _Holding(actor, planned, attempt)
            report(Event("scene", planned.entry.name, total=planned.tiles))

    def prepared(ref: Any) -> None:
        actor = preparing.pop(ref)
        try:
            info = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            reason = str(exc.cause) if getattr(exc, "cause", None) is not None else str(exc)
            refusals.append(reason)
            report(Event("message", text=f"worker refused: {reason}"))
            ray.kill(actor, no_restart=True)
            return
        except ray.exceptions.ActorDiedError as exc:  # gone for good (Ray could not restart it)
            refusals.append(f"a worker died for good: {str(exc).splitlines()[0][:200]}")
            report(Event("message", text=refusals[-1]))
            return
        except ray.exceptions.RayError as exc:  # died while starting: Ray restarts it; ask again, a few times
            starts[actor] = starts.get(actor, 0) + 1
            if starts[actor] > 3:
                refusals.append(f"a worker died {starts[actor]} times while starting ({type(exc).__name__})")
                report(Event("message", text=refusals[-1]))
                ray.kill(actor, no_restart=True)
                return
            report(Event("message", text=f"a worker died while starting ({type(exc).__name__}); asking again"))
            preparing[actor.prepare.remote(*checks)] = actor
            return
        for message in info.get("messages", []):
            report(Event("message", text=f"{info['worker']}: {message}"))
        outcome.workers.append(info)
        outcome.engines = sorted(set(outcome.engines) | set(info["engines"]))
        report(
            Event(
                "message",
                text=f"worker {info['worker']} ready: {info['device']}, {info['threads']} thread(s), "
                f"{', '.join(dict.fromkeys(info['engines']))}",
            )
        )
        free[actor] = SLOTS

    def release(actor: Any) -> None:
        if actor in free:  # not when it died meanwhile (it is being asked again)
            free[actor] += 1

    def returned(ref: Any) -> None:
        held = holding.pop(ref)
        name = held.planned.entry.name
        try:
            record = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # an error escaped the scene's own handling: deterministic
            release(held.actor)
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            finish(_failed(options, held.planned, f"{type(cause).__name__}: {cause}", deaths.get(name)))
            return
        except ray.exceptions.RayError as exc:  # the worker process died (or its node): Ray restarts it
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            deaths.setdefault(name, []).append(why)
            _remove_partial(held.planned)
            attempt = held.attempt + 1
            if held.actor in free:  # the first of its scenes to report the death: ask the restarted one again
                del free[held.actor]
                preparing[held.actor.prepare.remote(*checks)] = held.actor
            if attempt > session.spec.retries:
                finish(
                    _failed(
                        options,
                        held.planned,
                        f"the worker holding it died {attempt} time(s); given up after {session.spec.retries} "
                        f"retr{'y' if session.spec.retries == 1 else 'ies'} (last: {why})",
                        deaths[name],
                    )
                )
            else:
                report(
                    Event(
                        "message",
                        text=f"the worker holding {name} died ({why}); retrying it ({attempt}/{session.spec.retries})",
                    )
                )
                pending.appendleft((held.planned, attempt))
            return
        release(held.actor)
        if record is None:
            outcome.resumed.append(held.planned)
            report(Event("skip", name, count=held.planned.tiles))
            return
        if name in deaths:
            record.notes.append(f"retried after its worker died: {'; '.join(deaths[name])}")
        report(Event("tiles", name, count=held.planned.tiles))
        finish(record)

    started, noticed = time.monotonic(), False
    try:
        while (pending and not stop.requested) or holding:
            give_out()
            if not (free or holding or noticed) and preparing and time.monotonic() - started > WAIT_NOTICE_S:
                noticed = True
                report(
                    Event(
                        "message",
                        text=f"no worker is ready after {WAIT_NOTICE_S:.0f} s ({len(preparing)} waiting to be placed "
                        f"or started, each asking {layout.cpus} CPU(s)"
                        f"{' and 1 GPU' if layout.gpus else ''}): Ray places them when the cluster has room; "
                        "`ray status` shows what is busy",
                    )
                )
            if not holding and not preparing and not free:
                why = "; ".join(dict.fromkeys(refusals)) or "none was left"
                for planned, _attempt in pending:
                    finish(_failed(options, planned, f"no cluster worker could run it: {why}", None))
                pending.clear()
                break
            refs = list(holding) + list(preparing)
            ready, _ = ray.wait(refs, num_returns=1, timeout=0.5)
            for ref in ready:
                if ref in preparing:
                    prepared(ref)
                else:
                    returned(ref)
    except KeyboardInterrupt:
        outcome.interrupted = True
        for held in holding.values():
            finish(_failed(options, held.planned, "abandoned by a second Ctrl-C", None, status="interrupted"))
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
    outcome.interrupted = outcome.interrupted or stop.requested
    return outcome


def _remove_partial(planned: PlannedScene) -> None:
    """The temporary file a worker that died while writing ``planned`` left (its output's atomic write); the final
    name was never touched. Called before the scene is given out again, so no live writer owns it."""
    if planned.output is None:
        return
    for partial in planned.output.parent.glob(f".{planned.output.name}.*.tmp"):
        partial.unlink(missing_ok=True)


def _failed(
    options: InferOptions,
    planned: PlannedScene,
    error: str,
    deaths: list[str] | None,
    *,
    status: str = "failed",
) -> SceneRecord:
    notes = [f"worker deaths: {'; '.join(deaths)}"] if deaths else []
    return scene_record(options, planned, status, error=error, notes=notes)


__all__ = [
    "INSTALL_HINT",
    "ClusterError",
    "ClusterSession",
    "ClusterSpec",
    "SceneWorker",
    "WorkerLayout",
    "layout_workers",
    "require_ray",
    "run_on_cluster",
]
