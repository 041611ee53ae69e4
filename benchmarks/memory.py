"""Reading this process's memory figures from ``/proc/self/status`` (Linux), for the benchmark scripts."""

from __future__ import annotations


def status_bytes(field: str) -> int:
    """``VmRSS``, ``VmHWM``, ``RssAnon``, … in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")
