"""What each backend is before one is opened: what a run must prepare for it, which precisions and devices it takes,
and how it holds memory. Code outside ``backends/`` decides on these facts (:func:`backend_kind`), never on a
backend's name, so a new runtime is one entry here and one class beside it."""

from __future__ import annotations

from dataclasses import dataclass

from dualsr_deploy.errors import InputError

ARTEFACTS = ("graph", "plan", "ir")
# precisions whose artefacts only a calibration that passed the quality rule makes (dualsr export --int8): found in the
# artefacts folder, never exported on the fly by a run or a bench
CALIBRATED_PRECISIONS = ("int8",)  # an ONNX graph, a TensorRT plan, OpenVINO IR (see dualsr_deploy.artefacts)

# Bands per call of the band-chunk graphs (dualsr_deploy.export.onnx) a run makes for ONNX Runtime and OpenVINO on a
# CPU. One 128² × 285 LR tile of the shipped airborne ×2 weights, second call, 2-core Xeon (AVX512-BF16, AMX):
# OpenVINO bf16 whole graph 3.24 s / peak 3.84 GiB, chunks of 4 / 8 / 16 / 32 bands 3.37 / 3.07 / 3.14 / 3.61 s,
# 0.55 / 0.61 / 0.71 / 1.01 GiB; OpenVINO fp32 whole 8.62 s / 7.00 GiB, chunks of 8 8.00 s / 0.65 GiB; ONNX Runtime
# fp32 whole 8.66 s / 7.42 GiB, chunks of 8 / 16 8.09 / 9.81 s, 0.63 / 0.81 GiB.
CHUNK_BANDS = 8
# the folded model itself: fp32 reference (bit-reproducible run to run) every other backend's fp32 is checked against
REFERENCE_BACKEND = "torch"


@dataclass(frozen=True)
class BackendKind:
    """``artefact``: what it runs, exported beforehand (``None``: the folded model itself, any band count).
    ``precisions``: what it can be asked for. ``devices``: ``torch`` (a torch device: cpu, cuda), ``cuda`` (CUDA
    GPUs only) or ``openvino`` (OpenVINO device names). ``gpu_tensors``: on a GPU it takes and returns CUDA tensors
    without host copies. ``whole_activations``: it holds the network's activations for every band plane of a tile
    batch at once (exported graphs; the torch backend runs planes in chunks), which sizes its batches."""

    name: str
    artefact: str | None
    precisions: tuple[str, ...]
    devices: str
    gpu_tensors: bool
    whole_activations: bool

    @property
    def fixed_bands(self) -> bool:
        """Its artefacts are made for one band count: a run needs one per (scale, band count)."""
        return self.artefact is not None

    @property
    def cuda_only(self) -> bool:
        return self.devices == "cuda"

    def band_chunk(self, device: str, precision: str) -> int | None:
        """Bands per call of the graphs a run makes for it on ``device`` in ``precision``: :data:`CHUNK_BANDS` for
        ONNX Runtime and OpenVINO on a CPU (band-chunk graphs: as fast, a tenth of the memory), None (whole-cube
        graphs) on GPUs, for TensorRT, for the torch backend (it chunks by itself), for fp16 graphs and for calibrated
        graphs, which ``dualsr export --int8`` makes whole."""
        on_cpu = device.split(":")[0].lower() == "cpu"
        whole_only = ("fp16", *CALIBRATED_PRECISIONS)
        if self.name in ("onnx", "openvino") and on_cpu and self.artefact_precision(precision) not in whole_only:
            return CHUNK_BANDS
        return None

    def artefact_precision(self, precision: str) -> str:
        """The precision of the graph its artefact is made from: the run's for graphs and plans; fp32 for IR, whose
        precision is a hint given when it is compiled, except IR converted from a calibrated (INT8) graph."""
        return "fp32" if self.artefact == "ir" and precision not in CALIBRATED_PRECISIONS else precision


BACKEND_KINDS = {
    "torch": BackendKind("torch", None, ("fp32", "bf16", "bf16-mixed", "fp16", "fp64"), "torch", True, False),
    "onnx": BackendKind("onnx", "graph", ("fp32", "fp16", "int8"), "torch", True, True),
    "trt": BackendKind("trt", "plan", ("fp32", "fp16"), "cuda", True, True),
    "openvino": BackendKind("openvino", "ir", ("fp32", "bf16", "int8"), "openvino", False, True),
}


def backend_kind(name: str) -> BackendKind:
    """The kind of backend ``name``; an unknown name is refused with the choices."""
    try:
        return BACKEND_KINDS[name]
    except KeyError:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_KINDS)}") from None


__all__ = [
    "ARTEFACTS",
    "BACKEND_KINDS",
    "CALIBRATED_PRECISIONS",
    "CHUNK_BANDS",
    "REFERENCE_BACKEND",
    "BackendKind",
    "backend_kind",
]
