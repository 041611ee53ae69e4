"""Which backends this machine can run, and why the others cannot (``dualsr backends``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dualsr_deploy.runtimes import (
    ORT_PROVIDERS,
    cpu_native_bf16,
    onnxruntime_providers,
    openvino_devices,
    tensorrt_version,
)


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    detail: str


def backend_statuses() -> list[BackendStatus]:
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else None
    rows = [
        BackendStatus("torch-cpu", True, f"torch {torch.__version__}"),
        BackendStatus("torch-cuda", cuda, gpu or "torch sees no CUDA device"),
    ]
    version, providers = onnxruntime_providers()
    for provider_name, provider in ORT_PROVIDERS.items():
        name = f"onnx-{provider_name}"
        if version is None:
            rows.append(BackendStatus(name, False, "onnxruntime not installed: pip install 'dualsr-deploy[cpu]'"))
            continue
        ok = provider in providers
        hint = "" if ok else " not in this build (pip install 'dualsr-deploy[gpu]' on a CUDA machine)"
        rows.append(BackendStatus(name, ok, f"onnxruntime {version}: {provider}{hint}"))
    ov_version, ov_devices = openvino_devices()
    if ov_version is None:
        rows.append(BackendStatus("openvino", False, "OpenVINO not installed: pip install 'dualsr-deploy[openvino]'"))
    else:
        bf16 = "bf16 and fp32" if cpu_native_bf16() else "fp32 (this CPU has no native bf16)"
        rows.append(BackendStatus("openvino", True, f"OpenVINO {ov_version}: {', '.join(ov_devices)}; CPU {bf16}"))
    trt = tensorrt_version()
    if trt is None:
        rows.append(BackendStatus("trt", False, "TensorRT not installed (pip install 'dualsr-deploy[gpu]')"))
    elif not cuda:
        rows.append(BackendStatus("trt", False, f"TensorRT {trt} found, but torch sees no CUDA device"))
    else:
        rows.append(BackendStatus("trt", True, f"TensorRT {trt} on {gpu}: plans built by dualsr export"))
    return rows


__all__ = ["BackendStatus", "backend_statuses"]
