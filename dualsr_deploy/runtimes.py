"""What this machine can run: CUDA, ONNX Runtime and its providers, TensorRT. Probes only; nothing here builds or
runs a model, so :mod:`dualsr_deploy.backends` and :mod:`dualsr_deploy.export` both depend on it, never on each
other for these facts."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from dualsr_deploy.errors import BackendUnavailableError, InputError
from dualsr_deploy.optional import find, require

ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic on x86
CPU_BF16_ENV = "DUALSR_CPU_BF16"  # 1/0 overrides the probe (tests simulate CPUs with and without native bf16)


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16; ``DUALSR_CPU_BF16=0/1``
    overrides).

    Without it torch emulates bf16 through fp32 conversions, which is slower than fp32 itself.
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):  # x86
            flags = set(line.split(":", 1)[-1].split())
            return any(flag in flags for flag in CPU_BF16_FLAGS)
        if line.startswith("Features"):  # Arm: the BF16 extension (Neoverse V1/N2, Graviton 3 …)
            return "bf16" in line.split(":", 1)[-1].split()
    return False


def default_device() -> str:
    """``cuda`` when torch sees a CUDA device, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``, normalised; CUDA must be there."""
    try:
        target = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"--device must be cpu or cuda[:N]; got {device!r}") from exc
    if target.type not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda[:N]; got {device!r}")
    if target.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"--device {device}: torch sees no CUDA device on this machine")
    return str(target)


def import_onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, or :class:`BackendUnavailableError` naming the extras."""
    return require(
        "onnxruntime",
        feature="ONNX Runtime",
        extra="cpu",
        error=BackendUnavailableError,
        hint="(or '[gpu]' on a CUDA machine)",
    )


def onnxruntime_providers() -> tuple[str | None, list[str]]:
    """(ONNX Runtime's version, its available execution providers); (None, []) when it is not installed."""
    ort = find("onnxruntime")
    if ort is None:
        return None, []
    return str(ort.__version__), list(ort.get_available_providers())


def tensorrt_version() -> str | None:
    """The usable TensorRT's version, or ``None``.

    ``tensorrt-stubs`` makes ``import tensorrt`` succeed with an empty module, so a usable TensorRT is detected
    by what it provides (``Builder`` and a parseable ``__version__``), not by the import alone.
    """
    tensorrt = find("tensorrt")
    if tensorrt is None:
        return None
    version = getattr(tensorrt, "__version__", "")
    if not hasattr(tensorrt, "Builder") or not version[:1].isdigit():
        return None
    return str(version)


def require_tensorrt() -> None:
    """Raise :class:`BackendUnavailableError` unless a usable TensorRT is installed (type stubs alone are not)."""
    if tensorrt_version() is None:
        raise BackendUnavailableError(
            "TensorRT is not installed (or only its type stubs are): pip install 'dualsr-deploy[gpu]' on a CUDA machine"
        )


def import_openvino() -> ModuleType:
    """The ``openvino`` module, or :class:`BackendUnavailableError` naming the extra."""
    return require("openvino", feature="the openvino backend", extra="openvino", error=BackendUnavailableError)


def openvino_devices() -> tuple[str | None, list[str]]:
    """(OpenVINO's version, its available devices: ``CPU``, ``GPU``, ``NPU`` …); (None, []) when not installed."""
    openvino = find("openvino")
    if openvino is None:
        return None, []
    return str(openvino.__version__).split("-")[0], list(openvino.Core().available_devices)


def check_bf16(device: str) -> None:
    """Refuse bf16 on a CPU that would only emulate it (slower than fp32, and no more exact)."""
    if device.lower().startswith("cpu") and not cpu_native_bf16():
        raise InputError(
            "bf16 on this CPU would be emulated (it has no AVX512-BF16 or AMX-BF16), slower than fp32: use "
            "--precision fp32, or auto to let each device pick"
        )


def gpu_identity() -> dict[str, Any]:
    """What a TensorRT plan is tied to: GPU name, compute capability, CUDA and TensorRT versions."""
    if not torch.cuda.is_available():
        raise BackendUnavailableError("TensorRT plans need a CUDA GPU; torch sees none")
    major, minor = torch.cuda.get_device_capability(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "compute_capability": f"{major}.{minor}",
        "cuda": torch.version.cuda,
        "tensorrt": tensorrt_version(),
    }


__all__ = [
    "CPU_BF16_ENV",
    "ORT_PROVIDERS",
    "check_bf16",
    "check_device",
    "cpu_native_bf16",
    "default_device",
    "gpu_identity",
    "import_onnxruntime",
    "import_openvino",
    "onnxruntime_providers",
    "openvino_devices",
    "require_tensorrt",
    "tensorrt_version",
]
