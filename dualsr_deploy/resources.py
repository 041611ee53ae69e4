"""What this process may use of the machine: CPUs (its affinity mask, capped by a cgroup CPU quota) and memory
(physical memory, capped by a cgroup memory limit), as containers, batch schedulers (Slurm, Kubernetes) and cloud
VMs set them. Both cgroup v2 (``cpu.max``, ``memory.max``) and v1 (``cpu.cfs_quota_us``/``cpu.cfs_period_us``,
``memory.limit_in_bytes``) are read, from this process's own cgroup up to the hierarchy's root, the tightest limit
winning."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


def _cgroup_folders(controller: str, root: Path = CGROUP_ROOT, table: Path = Path("/proc/self/cgroup")) -> list[Path]:
    """This process's cgroup folders for ``controller`` (v1) or in the unified hierarchy (v2), innermost first,
    up to the hierarchy's root; the root alone when the process's own folder is not visible (a namespaced mount)."""
    try:
        lines = table.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        number, controllers, path = [*line.split(":", 2), "", ""][:3]
        found: Path | None = None
        if number == "0" and controllers == "" and (root / "cgroup.controllers").is_file():
            found = root  # v2: one unified hierarchy
        elif controller in controllers.split(","):
            found = next((m for m in (root / controllers, root / controller) if m.is_dir()), None)
        if found is None:
            continue
        base = found
        folders = []
        leaf = base / path.lstrip("/")
        while leaf.is_relative_to(base):
            if leaf.is_dir():
                folders.append(leaf)
            if leaf == base:
                break
            leaf = leaf.parent
        return folders or [base]
    return []


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, table: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs a cgroup quota allows this process (``1.5``: 150 ms of CPU time per 100 ms), or None."""
    limits = []
    for folder in _cgroup_folders("cpu", root, table):
        v2 = _read(folder / "cpu.max")
        if v2 is not None:
            quota, _, period = v2.partition(" ")
            if quota != "max" and period:
                limits.append(int(quota) / int(period))
            continue
        quota_text, period_text = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota_text and period_text and int(quota_text) > 0:
            limits.append(int(quota_text) / int(period_text))
    return min(limits) if limits else None


def cgroup_memory_limit(root: Path = CGROUP_ROOT, table: Path = Path("/proc/self/cgroup")) -> int | None:
    """The bytes a cgroup memory limit allows this process, or None."""
    limits = []
    for folder in _cgroup_folders("memory", root, table):
        text = _read(folder / "memory.max") or _read(folder / "memory.limit_in_bytes")
        if text and text != "max" and int(text) < UNLIMITED:
            limits.append(int(text))
    return min(limits) if limits else None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (rounded down, at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def usable_memory() -> int:
    """Bytes this process may use: physical memory, capped by a cgroup memory limit."""
    try:
        physical = int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        physical = 16 << 30
    limit = cgroup_memory_limit()
    return min(physical, limit) if limit is not None else physical


__all__ = ["cgroup_cpu_limit", "cgroup_memory_limit", "usable_cpus", "usable_memory"]
