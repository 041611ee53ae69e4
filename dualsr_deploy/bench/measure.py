"""Timing and memory: runs timed the same way on CPU and GPU, the device's matmul ceiling, and peak memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import torch

from dualsr_deploy.backends.base import PRECISION_DTYPES


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_runs(fn: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    """One warm-up, then ``repeats`` timed runs: CUDA events on a GPU, ``perf_counter`` otherwise."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
    return times


def matmul_ceiling(device: torch.device, precision: str) -> float:
    """GFLOP/s of a large square matmul (2048² on CPU, 8192² on GPU) in ``precision`` on ``device``."""
    n = 8192 if device.type == "cuda" else 2048
    dtype = PRECISION_DTYPES.get(precision, torch.float32)
    if device.type == "cpu" and dtype == torch.float16:
        dtype = torch.float32
    a = torch.rand(n, n, device=device, dtype=dtype)
    b = torch.rand(n, n, device=device, dtype=dtype)
    times = time_runs(lambda: a @ b, 3, device)
    return 2 * n**3 / min(times) / 1e9


def status_bytes(field: str) -> int:
    """``VmRSS``, ``VmHWM``, ``RssAnon``, … of this process in bytes, from ``/proc/self/status`` (0 off Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class MemoryPeak:
    """Peak memory above the start while running: torch's CUDA allocator peak, or on CPU the anonymous resident
    memory (``RssAnon``, sampled every 5 ms; what the kernel cannot reclaim, unlike the page cache of memory-mapped
    files, which ``VmHWM`` counts too)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base = 0

    @staticmethod
    def _anon() -> int:
        return status_bytes("RssAnon")

    @property
    def kind(self) -> str:
        return "CUDA allocator peak" if self.device.type == "cuda" else "anonymous RSS above start (sampled)"

    def __enter__(self) -> MemoryPeak:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._anon()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._anon() - self._base)
            self._stop.wait(0.005)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()


__all__ = ["MemoryPeak", "matmul_ceiling", "status_bytes", "time_runs"]
