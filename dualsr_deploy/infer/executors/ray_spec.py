"""What a cluster run asks of Ray: where (:class:`ClusterSpec`: ``auto``, ``ray://HOST:PORT`` or ``local[:N]``) and
how many workers of what size (:func:`layout_workers`). Pure policy: nothing here talks to Ray."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from dualsr_deploy.errors import ClusterError, InputError
from dualsr_deploy.optional import install_hint, require

INSTALL_HINT = install_hint("cluster")
DEFAULT_WORKER_CORES = 4
_ADDRESS = re.compile(r"ray://[^\s:/]+:\d+")


def require_ray() -> ModuleType:
    return require("ray", feature="--cluster (runs on Ray)", extra="cluster", error=ClusterError)


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: ``auto`` (the Ray cluster this machine belongs to), ``ray://HOST:PORT`` (a remote one, through
    Ray Client) or ``local[:N]`` (a Ray instance started here for this run, with N workers).

    ``worker_cores``: CPU cores per worker when workers run on CPU (default: ``local:N`` shares this machine's
    cores among its N workers; otherwise 4). ``retries``: how many more times a scene is given out after the
    worker holding it died. ``device``: the device asked for; None lets the cluster decide (``cuda`` when it has
    GPUs).
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
        if text == "auto":
            return cls(text, "auto", None, worker_cores, retries, device)
        if _ADDRESS.fullmatch(text):
            return cls(text, text, None, worker_cores, retries, device)
        match = re.fullmatch(r"local(?::(\d+))?", text)
        if match is not None:
            workers = int(match.group(1)) if match.group(1) else None
            if workers is not None and workers < 1:
                raise InputError(f"--cluster local:N needs N ≥ 1; got {text!r}")
            return cls(text, None, workers, worker_cores, retries, device)
        raise InputError(
            f"--cluster {text!r}: give auto (the Ray cluster this machine is part of), ray://HOST:PORT (a remote "
            "cluster's client address, port 10001 by default) or local[:N] (N workers on this machine)"
        )


@dataclass(frozen=True)
class WorkerLayout:
    """How many workers, and what each asks of Ray."""

    count: int
    cpus: int
    gpus: int
    device: str
    memory_budget: int | None  # per worker, when the run gave none


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
                f"the cluster has no GPU for --device {device} (the trt backend always needs one); run with --device "
                "cpu and the torch or onnx backend"
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


__all__ = ["DEFAULT_WORKER_CORES", "INSTALL_HINT", "ClusterSpec", "WorkerLayout", "layout_workers", "require_ray"]
