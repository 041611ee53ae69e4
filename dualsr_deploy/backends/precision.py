"""``--precision auto``: per backend and device, the fastest precision whose effect on results was measured to be
negligible, and why.

The rule is a measured one (README "Precision"; ``benchmarks/precision_fidelity.py``): a reduced precision is
picked only where, on the 13 CAVE scenes and the demo scenes at ×4 (dual stage), it moved PSNR by < 0.01 dB and SAM
by < 0.01° against fp32 on every scene, and was faster. Where that has not been measured (CUDA: no GPU has been
lent to this project yet), ``auto`` stays at fp32. ``fp32`` itself stays available for bit-reproducible runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from dualsr_deploy.runtimes import cpu_native_bf16

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")

PRECISION_HELP = (
    "auto (default): per device the fastest precision measured to change results by < 0.01 dB / 0.01° "
    "(bf16 on CPUs with native bf16 for torch and openvino, fp32 elsewhere); fp32: bit-reproducible; bf16: "
    "torch/openvino on CPUs with native bf16, or CUDA; fp16: CUDA, and exported graphs and plans."
)


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    reason: str

    def describe(self) -> str:
        return f"--precision auto → {self.precision} ({self.reason})"


# Backends whose bf16 passed the fidelity rule on this project's measurements (CPU with native bf16).
CPU_BF16_MEASURED = ("torch", "openvino")


def auto_precision(backend: str, device: str) -> PrecisionChoice:
    """What ``--precision auto`` runs for ``backend`` on ``device``."""
    on_cpu = device.lower().startswith("cpu")
    if on_cpu and backend in CPU_BF16_MEASURED:
        if cpu_native_bf16():
            return PrecisionChoice("bf16", "this CPU has native bf16; measured within 0.01 dB / 0.01° of fp32")
        return PrecisionChoice("fp32", "this CPU has no native bf16, where bf16 is slower than fp32")
    if not on_cpu and backend in ("torch", "trt", "onnx"):
        return PrecisionChoice("fp32", "reduced precisions are not yet measured on a GPU (benchmarks/device_check.sh)")
    return PrecisionChoice("fp32", f"the {backend} backend has no reduced precision measured on {device}")


def resolve_precision(precision: str, backend: str, device: str) -> PrecisionChoice:
    """``precision`` as given, or what ``auto`` picks."""
    if precision == "auto":
        return auto_precision(backend, device)
    return PrecisionChoice(precision, "as asked")


__all__ = ["PRECISION_CHOICES", "PRECISION_HELP", "PrecisionChoice", "auto_precision", "resolve_precision"]
