"""Which backends this machine can run, and why the others cannot (``dualsr backends``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    detail: str


def tensorrt_version() -> str | None:
    """The usable TensorRT's version, or ``None``.

    ``tensorrt-stubs`` makes ``import tensorrt`` succeed with an empty module, so a usable TensorRT is detected
    by what it provides (``Builder`` and a parseable ``__version__``), not by the import alone.
    """
    try:
        import tensorrt
    except ImportError:
        return None
    version = getattr(tensorrt, "__version__", "")
    if not hasattr(tensorrt, "Builder") or not version[:1].isdigit():
        return None
    return str(version)


def backend_statuses() -> list[BackendStatus]:
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else None
    rows = [
        BackendStatus("torch-cpu", True, f"torch {torch.__version__}"),
        BackendStatus("torch-cuda", cuda, gpu or "torch sees no CUDA device"),
    ]
    try:
        import onnxruntime

        providers = set(onnxruntime.get_available_providers())
        version = onnxruntime.__version__
        for name, provider in (
            ("onnx-cpu", "CPUExecutionProvider"),
            ("onnx-cuda", "CUDAExecutionProvider"),
            ("onnx-tensorrt", "TensorrtExecutionProvider"),
        ):
            ok = provider in providers
            hint = "" if ok else " not in this build (pip install 'dualsr-deploy[gpu]' on a CUDA machine)"
            rows.append(BackendStatus(name, ok, f"onnxruntime {version}: {provider}{hint}"))
    except ImportError:
        for name in ("onnx-cpu", "onnx-cuda", "onnx-tensorrt"):
            rows.append(BackendStatus(name, False, "onnxruntime not installed: pip install 'dualsr-deploy[cpu]'"))
    version = tensorrt_version()
    if version is None:
        rows.append(BackendStatus("trt", False, "TensorRT not installed (pip install 'dualsr-deploy[gpu]')"))
    elif not cuda:
        rows.append(BackendStatus("trt", False, f"TensorRT {version} found, but torch sees no CUDA device"))
    else:
        rows.append(BackendStatus("trt", True, f"TensorRT {version} on {gpu}: plans built by dualsr export"))
    return rows
