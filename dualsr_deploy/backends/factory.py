"""``create``: the one place a backend is built from a name, a device and a precision (inference, ``dualsr bench``
and ``dualsr export --verify`` all come here).

What each backend runs: ``torch`` the folded cube model itself, ``onnx`` an exported graph, ``trt`` a TensorRT
plan. Which artefact that is, and building it when it is missing, is the caller's business (the inference pool
looks in the artefacts folder and exports on first need; the bench exports into a scratch folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.backends.base import PRECISION_DTYPES, Backend
from dualsr_deploy.errors import InputError

BACKENDS = ("torch", "onnx", "trt")
EXPORTED_PRECISIONS = ("fp32", "fp16")  # what a graph or a plan can be


def check_backend(name: str, precision: str, device: str) -> None:
    """Refuse a combination no backend can run, before anything is opened or exported."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISION_DTYPES:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_DTYPES)}")
    if name != "torch" and precision not in EXPORTED_PRECISIONS:
        raise InputError(
            f"the {name} backend runs exported graphs, which are {' or '.join(EXPORTED_PRECISIONS)}; got "
            f"--precision {precision}"
        )
    if name == "trt" and not device.startswith("cuda"):
        raise InputError("the trt backend runs on a CUDA GPU; give --device cuda")


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
) -> Backend:
    """A closed backend (call ``open()`` or use it as a context manager).

    ``core``: the folded model (``torch``). ``artefact``: the graph (``onnx``) or plan (``trt``); an artefact's
    precision is the one it was exported in, so ``precision`` is only checked for those.
    """
    check_backend(name, precision, device)
    if name == "torch":
        if core is None:
            raise InputError("the torch backend needs the folded model (core=)")
        from dualsr_deploy.backends.torch_backend import TorchBackend

        return TorchBackend(core, device=device, precision=precision, compile=compile)
    if artefact is None:
        raise InputError(f"the {name} backend needs an exported {'graph' if name == 'onnx' else 'plan'} (artefact=)")
    if name == "onnx":
        from dualsr_deploy.backends.onnx_backend import OnnxBackend

        return OnnxBackend(Path(artefact), provider=ort_provider(device))
    from dualsr_deploy.backends.trt_backend import TensorRTBackend

    return TensorRTBackend(Path(artefact))


__all__ = ["BACKENDS", "EXPORTED_PRECISIONS", "check_backend", "create", "ort_provider"]
