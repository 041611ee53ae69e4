"""``--precision auto``: per backend and device, the fastest precision whose effect on results was measured to be
negligible, and why.

The rule is a measured one (README "Precision"; ``benchmarks/precision_fidelity.py``): a reduced precision is
picked only where, on the 13 CAVE scenes and the demo scenes at ×4 (dual stage), it moved PSNR by < 0.01 dB and SAM
by < 0.01° against fp32 on every scene, and was faster. On CPUs with native bf16, bf16 is ~2× faster but failed the
SAM half of the rule, so ``auto`` keeps fp32 there and says why; where nothing has been measured (CUDA: no GPU has
been lent to this project yet), ``auto`` stays at fp32 too. A new measurement that passes goes into
:data:`CPU_BF16_MEASURED` (or a GPU counterpart) and ``auto`` follows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dualsr_deploy.runtimes import cpu_native_bf16

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    reason: str

    def describe(self) -> str:
        return f"--precision auto → {self.precision} ({self.reason})"


# Backends whose bf16 passed the fidelity rule on this project's measurements (CPU with native bf16). None did:
# on the 13 CAVE scenes and the 2 demo scenes at ×4 (dual), bf16 kept PSNR within 0.0096 dB of fp32 but moved SAM by
# up to 0.100° (egyptian_statue; mean +0.020°) for torch and openvino alike (benchmarks/precision_fidelity.py).
CPU_BF16_MEASURED: tuple[str, ...] = ()
CPU_BF16_FAILED = (
    "bf16 moved SAM by up to 0.10° against fp32 on CAVE scenes (rule: < 0.01°); --precision bf16 is ~2× faster"
)


def auto_precision(backend: str, device: str) -> PrecisionChoice:
    """What ``--precision auto`` runs for ``backend`` on ``device``."""
    on_cpu = device.lower().startswith("cpu")
    if on_cpu and backend in ("torch", "openvino"):
        if not cpu_native_bf16():
            return PrecisionChoice("fp32", "this CPU has no native bf16, where bf16 is slower than fp32")
        if backend in CPU_BF16_MEASURED:
            return PrecisionChoice("bf16", "this CPU has native bf16; measured within 0.01 dB / 0.01° of fp32")
        return PrecisionChoice("fp32", CPU_BF16_FAILED)
    if not on_cpu and backend in ("torch", "trt", "onnx"):
        return PrecisionChoice("fp32", "reduced precisions are not yet measured on a GPU (benchmarks/device_check.sh)")
    return PrecisionChoice("fp32", f"the {backend} backend has no reduced precision measured on {device}")


def resolve_precision(precision: str, backend: str, device: str) -> PrecisionChoice:
    """``precision`` as given, or what ``auto`` picks."""
    if precision == "auto":
        return auto_precision(backend, device)
    return PrecisionChoice(precision, "as asked")


__all__ = ["PRECISION_CHOICES", "PrecisionChoice", "auto_precision", "resolve_precision"]
