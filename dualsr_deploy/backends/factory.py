"""``create``: the one place a backend is built from a name, a device and a precision (inference, ``dualsr bench`` and
``dualsr export --verify`` all come here).

What each backend runs: ``torch`` the folded cube model itself, ``onnx`` an exported graph, ``trt`` a TensorRT plan,
``openvino`` OpenVINO IR converted from the fp32 graph. Which artefact that is, and building it when it is missing, is
the caller's business (a run prepares them in the artefacts folder before any scene computes; the bench exports
into a scratch folder)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.backends.base import PRECISION_DTYPES, Backend
from dualsr_deploy.backends.kinds import BACKEND_KINDS, backend_kind
from dualsr_deploy.errors import InputError
from dualsr_deploy.runtimes import check_bf16

BACKENDS = tuple(BACKEND_KINDS)
EXPORTED_PRECISIONS = BACKEND_KINDS["onnx"].precisions  # what a graph can be (int8 only from dualsr export --int8)
OPENVINO_PRECISIONS = BACKEND_KINDS["openvino"].precisions  # hints on the fp32 IR, or the INT8 graph's IR


def check_backend(name: str, precision: str, device: str) -> None:
    """Refuse a combination no backend can run, before anything is opened or exported."""
    kind = backend_kind(name)
    if precision not in PRECISION_DTYPES:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_DTYPES)}")
    if precision not in kind.precisions:
        if kind.artefact is None:
            raise InputError(
                f"the {name} backend runs {', '.join(kind.precisions)}; got --precision {precision}"
                + (" (INT8 graphs run on --backend onnx or openvino)" if precision == "int8" else "")
            )
        if kind.artefact == "ir":
            raise InputError(
                f"the {name} backend runs fp32 or bf16 (a hint on the fp32 IR), or int8; got --precision {precision}"
            )
        raise InputError(
            f"the {name} backend runs exported graphs, which are {' or '.join(kind.precisions)}; got "
            f"--precision {precision}"
        )
    if kind.cuda_only and not device.startswith("cuda"):
        if not torch.cuda.is_available():  # advice that works here: this machine has no CUDA device to give
            raise InputError(
                f"the {name} backend runs on an NVIDIA GPU with CUDA, and this machine has none; use --backend "
                "torch, onnx or openvino here, or run on a GPU machine"
            )
        raise InputError(f"the {name} backend runs on a CUDA GPU; give --device cuda")
    if kind.devices == "openvino" and device.startswith("cuda"):
        raise InputError(f"the {name} backend runs on OpenVINO devices (cpu, GPU, NPU …), not CUDA; give --device cpu")
    if precision.startswith("bf16") and device.lower().startswith("cpu"):
        check_bf16("cpu")
    if precision == "int8" and not device.lower().startswith("cpu"):
        raise InputError(f"INT8 graphs run on a CPU here (ONNX Runtime, OpenVINO); got --device {device}")


def ort_provider(device: str | torch.device) -> str:
    """The ONNX Runtime execution provider for a torch device: ``cpu`` or ``cuda``."""
    return "cpu" if torch.device(device).type == "cpu" else "cuda"


def create(
    name: str,
    *,
    core: FoldedCoarSR | None = None,
    artefact: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    compile: bool = False,
    threads: int | None = None,
) -> Backend:
    """A closed backend (call ``open()`` or use it as a context manager).

    ``core``: the folded model (``torch``). ``artefact``: the graph (``onnx``), plan (``trt``) or IR (``openvino``,
    whose ``precision`` is a runtime hint); a graph's or plan's precision is the one it was exported in, so
    ``precision`` is only checked for those.
    """
    check_backend(name, precision, device)
    if name == "torch":
        if core is None:
            raise InputError("the torch backend needs the folded model (core=)")
        from dualsr_deploy.backends.torch_backend import TorchBackend

        return TorchBackend(core, device=device, precision=precision, compile=compile)
    if artefact is None:
        kind = {"onnx": "graph", "trt": "plan", "openvino": "IR"}[name]
        raise InputError(f"the {name} backend needs an exported {kind} (artefact=)")
    if name == "openvino":
        from dualsr_deploy.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(Path(artefact), device=device, precision=precision, threads=threads)
    if name == "onnx":
        from dualsr_deploy.backends.onnx_backend import OnnxBackend

        return OnnxBackend(Path(artefact), provider=ort_provider(device), threads=threads)
    from dualsr_deploy.backends.trt_backend import TensorRTBackend

    return TensorRTBackend(Path(artefact))


__all__ = ["BACKENDS", "EXPORTED_PRECISIONS", "OPENVINO_PRECISIONS", "check_backend", "create", "ort_provider"]
