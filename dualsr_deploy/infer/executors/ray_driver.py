"""The driver side of a cluster run: the connection to Ray (:class:`ClusterSession`) and the scheduling policy
(:class:`RayExecutor`).

Ray does the heavy lifting: its actors are the workers (:mod:`~dualsr_deploy.infer.executors.ray_worker`), its scheduler
places them (``SPREAD``), its object refs carry scenes and records, and its actor restarts bring a dead worker
back. What the driver adds is the job's own policy:

- **Scenes are tasks**, given to the least busy ready worker as workers report back (``ray.wait``), up to
  :data:`~dualsr_deploy.infer.executors.ray_worker.SLOTS` per worker. The driver alone appends the manifest, so
  a cluster run and a local run write the same manifest and ``--resume`` one another.
- **Failures.** A scene that fails (bad data, an error in the code) comes back as a ``failed`` record, once. A
  worker process that dies mid-scene (killed, out of memory, a lost node) is restarted by Ray and its scene is
  given to the next free worker, at most ``retries`` times more; then the scene is recorded failed with the
  reason. A half-written output of the dead worker is removed first.
- **Stopping.** Ctrl-C or SIGTERM stops handing out scenes, lets the workers finish the ones they hold, and exits
  130; a second Ctrl-C abandons those.

Requirements a cluster brings: every node has the same dualsr-deploy installed, and sees the archive, the output
folder, the artefacts folder and any ``--weights`` under the same paths (a shared filesystem). Paths are made
absolute on the driver before they are sent. (With the archive and the output in object storage, no shared folder
is needed: :mod:`~dualsr_deploy.infer.executors.ray_remote`.)
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dualsr_deploy._version import __version__
from dualsr_deploy.atomic import temp_pattern
from dualsr_deploy.errors import ClusterError
from dualsr_deploy.infer.executors.base import Job, Outcome
from dualsr_deploy.infer.executors.ray_spec import ClusterSpec, WorkerLayout, layout_workers, require_ray
from dualsr_deploy.infer.executors.ray_worker import SLOTS, SceneWorker
from dualsr_deploy.infer.manifest import SceneRecord, Status
from dualsr_deploy.infer.options import Event, InferOptions
from dualsr_deploy.infer.plan import PlannedScene
from dualsr_deploy.infer.records import scene_record

# Ray's switch for its single-machine mode (loopback address only), named for the platforms it is the default on.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
WAIT_NOTICE_S = 60.0  # say why nothing happens when no worker has started by then (a busy cluster)
START_ATTEMPTS = 3  # a worker that dies while starting is asked again this many times


class ClusterSession:
    """A connection to a Ray cluster for one run: started here (``local``) or joined, and left as found."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.ray = require_ray()
        self._owned = False
        self._restore: tuple[str | None, bool] | None = None

    def __enter__(self) -> ClusterSession:
        ray = self.ray
        if ray.is_initialized():
            return self  # the caller's connection (a notebook, a test): used as it is, not shut down
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        try:
            if self.spec.address is None:
                workers = self.spec.local_workers
                cores = self.spec.worker_cores or max(1, (os.cpu_count() or 1) // workers)
                self._loopback_only()
                ray.init(address="local", num_cpus=workers * cores, include_dashboard=False, **quiet)
            else:
                ray.init(address=self.spec.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            self._restore_environment()
            hint = (
                "start one with `ray start --head` (and `ray start --address HEAD:6379` on the other nodes), or run "
                "on this machine alone with --cluster local[:N]"
            )
            raise ClusterError(f"cannot reach a Ray cluster at {self.spec.text}: {exc}; {hint}") from exc
        self._owned = True
        return self

    def _loopback_only(self) -> None:
        """A cluster started here listens on 127.0.0.1 alone. Ray has no authentication by default, and on Linux
        its GCS, raylet and worker servers listen on every interface: anyone who reaches the machine during the run
        could submit work to it. Ray's single-machine mode (what it uses on macOS and Windows) advertises and binds
        the loopback address; it is read from the environment by every Ray process this one starts, and from Ray's
        constants here, so both are set for the life of the session."""
        from ray._private import ray_constants

        self._restore = (os.environ.get(LOCAL_ONLY_ENV), ray_constants.ENABLE_RAY_CLUSTER)
        os.environ[LOCAL_ONLY_ENV] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            self.ray.shutdown()
        self._restore_environment()

    def _restore_environment(self) -> None:
        if self._restore is not None:
            from ray._private import ray_constants

            environ, constant = self._restore
            if environ is None:
                os.environ.pop(LOCAL_ONLY_ENV, None)
            else:
                os.environ[LOCAL_ONLY_ENV] = environ
            ray_constants.ENABLE_RAY_CLUSTER = constant
            self._restore = None

    def nodes(self) -> list[dict[str, Any]]:
        return [node for node in self.ray.nodes() if node.get("Alive")]

    def default_device(self) -> str:
        """``cuda`` when the cluster has a GPU, else ``cpu``."""
        return "cuda" if any(node.get("Resources", {}).get("GPU", 0) for node in self.nodes()) else "cpu"


def open_cluster(
    stack: contextlib.ExitStack,
    cluster: ClusterSpec,
    options: InferOptions,
    report: Callable[[Event], None],
    how: str = "",
) -> tuple[ClusterSession, WorkerLayout, InferOptions]:
    """Connect to the cluster for the life of ``stack``, lay its workers out, say so (``how``: what the workers do,
    appended), and return the options its workers run with (their device and memory budget)."""
    session = stack.enter_context(ClusterSession(cluster))
    wanted = cluster.device or ("cuda" if options.backend.kind.cuda_only else session.default_device())
    layout = layout_workers(cluster, session.nodes(), wanted)
    options = replace(
        options,
        backend=replace(options.backend, device=layout.device),
        memory_budget=options.memory_budget or layout.memory_budget,
    )
    gpu = " and 1 GPU" if layout.gpus else ""
    report(
        Event(
            "message",
            text=f"Ray cluster {cluster.text}: {layout.count} worker(s) on {len(session.nodes())} node(s), "
            f"{layout.cpus} CPU(s){gpu} each{how}",
        )
    )
    return session, layout, options


@dataclass
class _Holding:
    actor: Any
    planned: PlannedScene
    attempt: int  # how many times a worker died holding it before


def _absolute(options: InferOptions) -> InferOptions:
    backend = options.backend
    backend = replace(
        backend,
        artefacts_dir=backend.artefacts_dir.resolve(),
        weights=tuple((s, Path(p).resolve()) for s, p in backend.weights),
    )
    root = options.root.resolve() if options.root is not None else None
    return replace(options, backend=backend, root=root)


def _absolute_scene(planned: PlannedScene) -> PlannedScene:
    entry = replace(planned.entry, path=planned.entry.path.resolve())
    output = planned.output.resolve() if planned.output is not None else None
    return replace(planned, entry=entry, output=output)


def remove_partial(planned: PlannedScene) -> None:
    """The temporary file or folder a worker that died while writing ``planned`` left (its output's atomic write, or
    a streamed scene's staging folder); the final name was never touched. Called before the scene is given out
    again, so no live writer owns it."""
    if planned.output is None:
        return
    for partial in planned.output.parent.glob(temp_pattern(planned.output.name)):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def identity_problem(record: object, planned: PlannedScene) -> str | None:
    """Why a record a worker returned is not one of ``planned``'s (not a record, another scene's, an unknown
    status), or None."""
    if not isinstance(record, SceneRecord):
        return f"not a scene record ({type(record).__name__})"
    if record.name != planned.entry.name:
        return f"it names scene {record.name!r}"
    if record.status not in ("ok", "failed", "interrupted"):
        return f"unknown status {record.status!r}"
    return None


def record_problem(record: object, planned: PlannedScene) -> str | None:
    """Why a record a worker returned for ``planned`` cannot go in the manifest (another scene's, an unknown status,
    an output other than the one planned for it), or None."""
    problem = identity_problem(record, planned)
    if problem is not None or not isinstance(record, SceneRecord):
        return problem
    if record.output is not None:
        expected = planned.output.resolve() if planned.output is not None else None
        if expected is None or Path(record.output).resolve() != expected:
            return f"its output {record.output!r} is not the one planned ({expected})"
    if record.status == "ok" and record.output is None:
        return "status ok without an output"
    return None


class RayExecutor:
    """Gives a job's scenes to ``layout.count`` workers on the session's cluster; see the module docstring.
    ``weights``: scale → SHA-256 of the driver's weights, which every worker must have too."""

    def __init__(
        self,
        session: ClusterSession,
        layout: WorkerLayout,
        *,
        out_dir: Path,
        archive_root: Path,
        weights: dict[int, str],
    ) -> None:
        self.session = session
        self.ray = session.ray
        self.layout = layout
        self.out_dir = out_dir
        self.archive_root = archive_root
        self.weights = weights

    def run(self, job: Job) -> Outcome:
        return _RayRun(self, job).run()


class _RayRun:
    """One run's scheduling state: workers starting (``preparing``), ready ones and their free slots (``free``),
    scenes in flight (``holding``), scenes waiting (``pending``)."""

    def __init__(self, executor: RayExecutor, job: Job) -> None:
        self.ray = executor.ray
        self.retries = executor.session.spec.retries
        self.layout = executor.layout
        self.job = job
        self.options = _absolute(job.options)
        self.outcome = Outcome()
        todo = [_absolute_scene(p) for p in job.todo]
        bands = sorted({p.entry.shape[0] for p in todo if p.entry.shape is not None})
        needs = [
            (s, c) for s in self.options.scales for c in (bands if self.options.backend.kind.fixed_bands else bands[:1])
        ]
        self.checks: tuple[Any, ...] = (
            __version__,
            str(executor.out_dir.resolve()),
            str(executor.archive_root.resolve()),
            executor.weights,
            needs,
        )
        self.actors: list[Any] = []
        self.preparing: dict[Any, Any] = {}  # prepare ref → actor
        self.free: dict[Any, int] = {}  # ready workers → scenes they can take now
        self.holding: dict[Any, _Holding] = {}  # process ref → what it holds
        self.pending = collections.deque((p, 0) for p in todo)
        self.refusals: list[str] = []
        self.deaths: dict[str, list[str]] = {}
        self.starts: dict[Any, int] = {}

    # What a run of another kind (:mod:`~dualsr_deploy.infer.executors.ray_remote`) changes: its workers, what a
    # scene is sent as, how a returned record is checked, and what a dead worker's scene leaves behind.
    worker_class: type = SceneWorker

    def _worker_args(self) -> tuple[Any, ...]:
        return (self.options, self.options.layout, self.layout.cpus)

    def _submit(self, actor: Any, planned: PlannedScene) -> Any:
        return actor.process.remote(planned, self.job.previous(planned))

    def _problem(self, record: object, planned: PlannedScene) -> str | None:
        return record_problem(record, planned)

    def _remove_partial(self, planned: PlannedScene) -> None:
        remove_partial(planned)

    def _closing(self) -> None:
        """Before the workers are killed at the end of the run."""

    def run(self) -> Outcome:
        actor_class = self.ray.remote(self.worker_class).options(
            num_cpus=self.layout.cpus,
            num_gpus=self.layout.gpus,
            max_restarts=-1,  # Ray brings a dead worker back; each scene's retries are bounded here
            max_task_retries=0,
            max_concurrency=SLOTS,
            scheduling_strategy="SPREAD",
        )
        self.actors = [actor_class.remote(*self._worker_args()) for _ in range(self.layout.count)]
        for actor in self.actors:
            self.preparing[actor.prepare.remote(*self.checks)] = actor
        try:
            self._loop()
        except KeyboardInterrupt:
            self.outcome.interrupted = True
            for held in self.holding.values():
                self.job.finish(self._failed(held.planned, "abandoned by a second Ctrl-C", status="interrupted"))
        finally:
            self._closing()
            for actor in self.actors:
                self.ray.kill(actor, no_restart=True)
        self.outcome.interrupted = self.outcome.interrupted or self.job.stop.requested
        return self.outcome

    def _loop(self) -> None:
        started, noticed = time.monotonic(), False
        while (self.pending and not self.job.stop.requested) or self.holding:
            self._give_out()
            waiting = not (self.free or self.holding or noticed) and self.preparing
            if waiting and time.monotonic() - started > WAIT_NOTICE_S:
                noticed = True
                self._say(
                    f"no worker is ready after {WAIT_NOTICE_S:.0f} s ({len(self.preparing)} waiting to be placed or "
                    f"started, each asking {self.layout.cpus} CPU(s){' and 1 GPU' if self.layout.gpus else ''}): Ray "
                    "places them when the cluster has room; `ray status` shows what is busy"
                )
            if not self.holding and not self.preparing and not self.free:
                why = "; ".join(dict.fromkeys(self.refusals)) or "none was left"
                for planned, _attempt in self.pending:
                    self.job.finish(self._failed(planned, f"no cluster worker could run it: {why}"))
                self.pending.clear()
                return
            ready, _ = self.ray.wait(list(self.holding) + list(self.preparing), num_returns=1, timeout=0.5)
            for ref in ready:
                if ref in self.preparing:
                    self._prepared(ref)
                else:
                    self._returned(ref)

    def _say(self, text: str) -> None:
        self.job.report(Event("message", text=text))

    def _give_out(self) -> None:
        while self.pending and not self.job.stop.requested and self.free:
            actor = max(self.free, key=lambda a: self.free[a])  # the least busy worker
            if not self.free[actor]:
                return
            self.free[actor] -= 1
            planned, attempt = self.pending.popleft()
            ref = self._submit(actor, planned)
            self.holding[ref] = _Holding(actor, planned, attempt)
            self.job.report(Event("scene", planned.entry.name, total=planned.tiles))

    def _prepared(self, ref: Any) -> None:
        ray, actor = self.ray, self.preparing.pop(ref)
        try:
            info = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            reason = str(exc.cause) if getattr(exc, "cause", None) is not None else str(exc)
            self.refusals.append(reason)
            self._say(f"worker refused: {reason}")
            ray.kill(actor, no_restart=True)
            return
        except ray.exceptions.ActorDiedError as exc:  # gone for good (Ray could not restart it)
            self.refusals.append(f"a worker died for good: {str(exc).splitlines()[0][:200]}")
            self._say(self.refusals[-1])
            return
        except ray.exceptions.RayError as exc:  # died while starting: Ray restarts it; ask again, a few times
            self.starts[actor] = self.starts.get(actor, 0) + 1
            if self.starts[actor] > START_ATTEMPTS:
                self.refusals.append(f"a worker died {self.starts[actor]} times while starting ({type(exc).__name__})")
                self._say(self.refusals[-1])
                ray.kill(actor, no_restart=True)
                return
            self._say(f"a worker died while starting ({type(exc).__name__}); asking again")
            self.preparing[actor.prepare.remote(*self.checks)] = actor
            return
        for message in info.get("messages", []):
            self._say(f"{info['worker']}: {message}")
        self.outcome.workers.append(info)
        self.outcome.backends = sorted(set(self.outcome.backends) | set(info["backends"]))
        self._say(
            f"worker {info['worker']} ready: {info['device']}, {info['threads']} thread(s), "
            f"{', '.join(dict.fromkeys(info['backends']))}"
        )
        self.free[actor] = SLOTS

    def _release(self, actor: Any) -> None:
        if actor in self.free:  # not when it died meanwhile (it is being asked again)
            self.free[actor] += 1

    def _returned(self, ref: Any) -> None:
        ray, held = self.ray, self.holding.pop(ref)
        name = held.planned.entry.name
        try:
            record = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # an error escaped the scene's own handling: deterministic
            self._release(held.actor)
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            self.job.finish(self._failed(held.planned, f"{type(cause).__name__}: {cause}", self.deaths.get(name)))
            return
        except ray.exceptions.RayError as exc:  # the worker process died (or its node): Ray restarts it
            self._worker_died(held, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            return
        self._release(held.actor)
        if record is None:
            self.outcome.resumed.append(held.planned)
            self.job.report(Event("skip", name, count=held.planned.tiles))
            return
        problem = self._problem(record, held.planned)
        if problem is not None:  # a worker is another process, maybe another machine: its word is checked too
            self.job.finish(self._failed(held.planned, f"its worker returned a record refused here: {problem}"))
            return
        if name in self.deaths:
            record.notes.append(f"retried after its worker died: {'; '.join(self.deaths[name])}")
        self.job.report(Event("tiles", name, count=held.planned.tiles))
        self.job.finish(record)

    def _worker_died(self, held: _Holding, why: str) -> None:
        name = held.planned.entry.name
        self.deaths.setdefault(name, []).append(why)
        self._remove_partial(held.planned)
        attempt = held.attempt + 1
        if held.actor in self.free:  # the first of its scenes to report the death: ask the restarted one again
            del self.free[held.actor]
            self.preparing[held.actor.prepare.remote(*self.checks)] = held.actor
        if attempt > self.retries:
            plural = "y" if self.retries == 1 else "ies"
            self.job.finish(
                self._failed(
                    held.planned,
                    f"the worker holding it died {attempt} time(s); given up after {self.retries} retr{plural} "
                    f"(last: {why})",
                    self.deaths[name],
                )
            )
            return
        self._say(f"the worker holding {name} died ({why}); retrying it ({attempt}/{self.retries})")
        self.pending.appendleft((held.planned, attempt))

    def _failed(
        self, planned: PlannedScene, error: str, deaths: list[str] | None = None, *, status: Status = "failed"
    ) -> SceneRecord:
        notes = [f"worker deaths: {'; '.join(deaths)}"] if deaths else []
        return scene_record(self.options, planned, status, error=error, notes=notes)


__all__ = [
    "WAIT_NOTICE_S",
    "ClusterSession",
    "RayExecutor",
    "identity_problem",
    "open_cluster",
    "record_problem",
    "remove_partial",
]
