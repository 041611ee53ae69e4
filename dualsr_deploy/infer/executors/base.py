"""What an executor is given (:class:`Job`) and what it gives back (:class:`Outcome`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.options import Event, InferOptions
from dualsr_deploy.infer.plan import PlannedScene
from dualsr_deploy.stop import StopRequest


@dataclass
class Job:
    """The scenes to run (``todo``: planned ``run``), the records of earlier runs for ``--resume`` (``done``: scene
    name → its last ``ok`` record), where finished records go (``finish``: appended to the manifest by the caller,
    on the caller's thread or a writer thread) and progress (``report``); ``stop`` is set by Ctrl-C/SIGTERM."""

    options: InferOptions
    todo: list[PlannedScene]
    done: dict[str, SceneRecord]
    finish: Callable[[SceneRecord], None]
    report: Callable[[Event], None]
    stop: StopRequest

    def previous(self, planned: PlannedScene) -> SceneRecord | None:
        """The scene's last ``ok`` record (input hash, output fingerprint), for the resume decision."""
        return self.done.get(planned.entry.name)


@dataclass
class Outcome:
    interrupted: bool = False
    resumed: list[PlannedScene] = field(default_factory=list)  # found done by an earlier run
    backends: list[str] = field(default_factory=list)  # the backends that ran (capability names)
    workers: list[dict[str, Any]] = field(default_factory=list)  # cluster workers' facts
    # why the run lost work it cannot account for scene by scene (a reader or writer thread that died): exit 1
    broken: list[str] = field(default_factory=list)


class Executor(Protocol):
    def run(self, job: Job) -> Outcome:
        """Run every scene of ``job``, handing each record to ``job.finish`` as it ends."""
        ...


__all__ = ["Executor", "Job", "Outcome"]
