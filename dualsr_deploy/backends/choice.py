"""``--backend auto``: of the backends this machine can run on the device, the one whose precision (``auto``'s choice,
or the one asked for) ran the weights' held-out scenes fastest, as measured by ``dualsr card … --precision`` and kept
beside the weights (:mod:`dualsr_deploy.backends.fidelity`), and why.

Records are timed on the held-out scenes grown to a tile's window (``timed_side``; records before
2026-12-07 timed the scenes as they are, which on small scenes measures a backend's per-call overhead). Only records
timed the same way are compared: for a device kind, those on the largest windows any of them was timed on.

A record times fp32 and the reduced precision on the same grown scenes, each run once untimed first, so one record
gives a backend's warm time in both precisions (an exported backend's export and compile, paid once per band count and
run, are not in it); an fp32 record (``dualsr card --precision fp32``) times a backend's fp32 alone, for a device where
``auto`` runs fp32, such as a CPU without native bf16. Every weights file a route runs counts once (a family's ×s file
and the dual stage's ×s/2 guide: under ``--weights auto`` each family chooses for its own weights), whatever the size
of its held-out scenes: a backend's speed is the geometric mean over the files of torch's time over its own, and a
backend with no time for one of them is not compared. Another backend is taken over torch only where it was
:data:`MARGIN` times faster. (Summed seconds let the family with the larger held-out scenes decide alone: cave's three
256² scenes took 8.1 s in torch bf16 against airborne's two 100² ones' 0.69 s.) Where no backend has a time (no records
for this kind of device, as on a GPU with the shipped weights), ``auto`` is the torch backend: it runs any band count
without exporting anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dualsr_deploy.backends.fidelity import FidelityRecord, device_kind, read_records, timing_words
from dualsr_deploy.backends.kinds import BACKEND_KINDS
from dualsr_deploy.backends.precision import resolve_precision

AUTO_BACKEND = "auto"
DEFAULT_BACKEND = "torch"
# Another backend must beat torch's time by this factor: timings of one pass over small scenes vary by ~10 % run to
# run on a shared 2-core VM, and torch exports nothing (cave ×2: OpenVINO bf16 9.10 s against torch bf16 9.35 s)
MARGIN = 1.2


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    reason: str

    def describe(self) -> str:
        return f"--backend auto → {self.backend} ({self.reason})"


def unavailable(backend: str, device: str) -> str | None:
    """Why ``backend`` cannot run here on the torch device ``device`` (cpu, cuda[:N]), or None when it can. Only
    the backends a record times are probed, so a run that ends on torch imports no other runtime."""
    from dualsr_deploy.runtimes import onnxruntime_providers, openvino_devices, tensorrt_version

    cuda = device.startswith("cuda")
    if backend == "onnx":
        provider = "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"
        return None if provider in onnxruntime_providers()[1] else f"no ONNX Runtime {provider} installed"
    if backend == "trt":
        if not cuda:
            return "needs a CUDA GPU"
        return None if tensorrt_version() is not None else "TensorRT not installed"
    if backend == "openvino":
        if cuda:
            return "runs on OpenVINO devices, not CUDA"
        return None if openvino_devices()[0] is not None else "OpenVINO not installed"
    return None


def timed_side(weights: Sequence[Path], kind: str) -> int | None:
    """What the records of a ``kind`` device for ``weights`` are compared on: the largest
    :attr:`~dualsr_deploy.backends.fidelity.FidelityRecord.timed_side` among them, or None (the scenes as they
    are, the way before 2026-12-07) where none has one. Records timed otherwise are not compared with them."""
    sides = []
    for path in weights:
        found, _why = read_records(path)
        if found is not None:
            sides += [r.timed_side for r in found.records if r.kind == kind and r.timed_side is not None]
    return max(sides, default=None)


def _seconds(weights: Path, backend: str, precision: str, kind: str, side: int | None) -> tuple[float | None, str]:
    """The time of ``backend`` in ``precision`` for ``weights`` on a ``kind`` device, timed on ``side``
    (:func:`timed_side`), if measured, or None and why not (empty: nothing measured). fp32's time is an fp32
    record's (``dualsr card --precision fp32``), which must have matched torch's fp32 under the rule, else the fp32
    pass of a reduced precision's record."""
    found, _why = read_records(weights)
    if found is None:
        return None, ""
    other: FidelityRecord | None = None  # a record that would do, timed on other windows than the rest
    own = found.find(backend, "fp32", kind) if precision == "fp32" else None
    if own is not None:
        if not own.passes():
            return None, f"its fp32 differs from torch's beyond the quality rule for {weights.name}"
        if own.timed_side == side:
            return (own.seconds, "") if own.seconds > 0 else (None, "")
        other = own
    for record in found.records:
        if (record.backend, record.kind) != (backend, kind) or record.precision == "fp32":
            continue
        seconds = record.seconds_fp32 if precision == "fp32" else record.seconds
        if (precision == "fp32" or record.precision == precision) and seconds > 0:
            if record.timed_side == side:
                return seconds, ""
            other = other or record
    if other is not None:
        return None, (
            f"timed on {timing_words(other.timed_side)} for {weights.name}, the others on {timing_words(side)}: "
            f"measure it again with dualsr card … --backend {backend}"
        )
    return None, ""


def _speeds(per_file: dict[str, list[float]]) -> dict[str, float]:
    """Each backend's speed: the geometric mean over the weights files of the fastest time on that file over its
    own (1.0: fastest on every file). Only the ratios between backends matter."""
    files = len(next(iter(per_file.values())))
    fastest = [min(times[i] for times in per_file.values()) for i in range(files)]
    return {
        name: math.prod(best / own for best, own in zip(fastest, times, strict=True)) ** (1 / files)
        for name, times in per_file.items()
    }


def choose_backend(device: str, precision: str, weights: Sequence[Path]) -> BackendChoice:
    """What ``--backend auto`` runs on the torch device ``device`` with ``--precision precision`` (``auto``: each
    backend's own choice under the quality rule) and ``weights`` (every file the route runs)."""
    kind = device_kind(device)
    side = timed_side(weights, kind)
    timed: dict[str, float] = {}  # summed seconds, to show
    per_file: dict[str, list[float]] = {}  # seconds per weights file, to compare
    left_out: list[str] = []
    for backend, what in BACKEND_KINDS.items():
        if precision != "auto" and precision not in what.precisions:
            continue
        chosen = resolve_precision(precision, backend, device, weights).precision
        measured = [_seconds(path, backend, chosen, kind, side) for path in weights]
        times = [t for t, _why in measured]
        if not weights or any(t is None for t in times):
            wrong = next((why for _t, why in measured if why), "")
            left_out.append(f"{backend} ({wrong})" if wrong else backend)
            continue
        missing = unavailable(backend, device)
        if missing is not None:
            left_out.append(f"{backend} ({missing})")
            continue
        timed[f"{backend} {chosen}"] = sum(t for t in times if t is not None)
        per_file[f"{backend} {chosen}"] = [t for t in times if t is not None]
    if not timed:
        why = f"no backend was timed on the held-out scenes of these weights on a {kind} device"
        if precision == "auto" or precision in BACKEND_KINDS[DEFAULT_BACKEND].precisions:
            return BackendChoice(DEFAULT_BACKEND, f"{why}; torch runs any band count without exporting")
        for backend, what in BACKEND_KINDS.items():  # a precision torch does not run (int8): the first that does
            if precision in what.precisions and unavailable(backend, device) is None:
                return BackendChoice(backend, f"{why}; {backend} is the first installed backend that runs {precision}")
        return BackendChoice(DEFAULT_BACKEND, f"{why}; no installed backend runs {precision}")
    speed = _speeds(per_file)
    ranked = sorted(timed.items(), key=lambda item: -speed[item[0]])
    listed = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in ranked)
    best = ranked[0][0].split()[0]
    torch_speed = next((speed[name] for name in timed if name.split()[0] == DEFAULT_BACKEND), None)
    if torch_speed is not None and best != DEFAULT_BACKEND and speed[ranked[0][0]] < MARGIN * torch_speed:
        best = DEFAULT_BACKEND
        reason = f"no backend was {MARGIN}× faster than torch on {timing_words(side)} on a {kind} device"
    else:
        reason = f"fastest on {timing_words(side)} on a {kind} device"
    reason += f": {listed}"
    if len(weights) > 1 and torch_speed is not None:
        others = [
            f"{name.split()[0]} {speed[name] / torch_speed:.2f}×" for name, _ in ranked if name.split()[0] != "torch"
        ]
        reason += f" ({', '.join(others)} torch's speed, geometric mean over {len(weights)} weights files)"
    if left_out:
        reason += f"; not timed here: {', '.join(left_out)}"
    return BackendChoice(best, reason)


__all__ = ["AUTO_BACKEND", "BackendChoice", "choose_backend", "unavailable"]
