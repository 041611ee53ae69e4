"""``--precision auto``: per backend, device and weights, the fastest precision that passed the quality rule, and
why.

The rule (:mod:`dualsr_deploy.backends.fidelity`): on the held-out scenes of the weights' model card, PSNR against
HR at most 0.02 dB lower and SAM against HR at most 0.02° higher than fp32's, per scene. ``dualsr card … --precision
bf16`` measures it and keeps the result beside the weights; ``auto`` picks a reduced precision only where the device
computes it natively and **every** weights file the run may use (both shipped families under ``--weights auto``,
and the ×s/2 weights of the dual stage) holds a passing record for this backend and kind of device. Else fp32, the
reference, bit-reproducible run to run (``--precision fp32`` asks for it outright).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dualsr_deploy.backends.fidelity import device_kind, verdict

PRECISION_CHOICES = ("auto", "fp32", "bf16", "bf16-mixed", "fp16", "int8")


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    reason: str

    def describe(self) -> str:
        return f"--precision auto → {self.precision} ({self.reason})"


def candidates(backend: str, device: str) -> tuple[tuple[str, ...], str]:
    """The reduced precisions ``auto`` may consider for ``backend`` on ``device``, fastest first, or none and why."""
    kind = device_kind(device)
    if kind == "cpu":
        if backend in ("torch", "openvino"):
            return (), "this CPU has no native bf16, where bf16 is slower than fp32"
        return (), f"the {backend} backend has no reduced precision on a CPU"
    if kind == "cpu-bf16":
        if backend == "torch":
            return ("bf16", "bf16-mixed"), ""
        if backend == "openvino":
            return ("bf16",), ""
        return (), f"the {backend} backend has no reduced precision on a CPU"
    if backend == "torch":
        return ("bf16", "fp16", "bf16-mixed"), ""
    if backend in ("onnx", "trt"):
        return ("fp16",), ""
    return (), f"the {backend} backend has no reduced precision on {device}"


def auto_precision(backend: str, device: str, weights: Sequence[Path] = ()) -> PrecisionChoice:
    """What ``--precision auto`` runs for ``backend`` on ``device`` with ``weights`` (every file the run may use;
    none known: fp32)."""
    reduced, why = candidates(backend, device)
    if not reduced:
        return PrecisionChoice("fp32", why)
    if not weights:
        return PrecisionChoice("fp32", "no weights files to check the quality rule for")
    kind = device_kind(device)
    reasons = []
    for precision in reduced:
        results = [verdict(path, backend, precision, kind) for path in weights]
        failed = [why for ok, why in results if not ok]
        if not failed:
            names = ", ".join(_short(path) for path in weights)
            return PrecisionChoice(
                precision, f"passed the quality rule on every held-out scene for {names} on a {kind} device"
            )
        reasons.append(failed[0])
    return PrecisionChoice("fp32", reasons[0] + "; fp32 is the reference")


def _short(path: Path) -> str:
    from dualsr_deploy.weights import WEIGHTS_DIR

    try:
        return str(path.resolve().relative_to(WEIGHTS_DIR))
    except ValueError:
        return path.name


def resolve_precision(precision: str, backend: str, device: str, weights: Sequence[Path] = ()) -> PrecisionChoice:
    """``precision`` as given, or what ``auto`` picks."""
    if precision == "auto":
        return auto_precision(backend, device, weights)
    return PrecisionChoice(precision, "as asked")


__all__ = ["PRECISION_CHOICES", "PrecisionChoice", "auto_precision", "candidates", "resolve_precision"]
