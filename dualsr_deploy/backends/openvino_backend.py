"""The ``openvino`` backend: OpenVINO IR (from ``dualsr export --openvino``) on an OpenVINO device.

CPU by default; other OpenVINO devices (``GPU``, ``NPU`` …) by name where the runtime has them. The IR holds fp32
weights; ``bf16`` is OpenVINO's inference-precision hint (on CPUs with native bf16: AVX512-BF16 or AMX), ``fp32``
pins the hint to f32 (OpenVINO would otherwise pick bf16 by itself on such CPUs). Tensors stay on the host. IR
converted from a band-chunk graph is called a chunk of bands at a time (:mod:`dualsr_deploy.backends.band_chunks`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualsr_deploy.artefacts import CHUNK_INPUTS, CHUNK_OUTPUTS, INPUT_NAME, check_ir, chunk_bands
from dualsr_deploy.backends.band_chunks import check_graph_shapes, run_in_chunks
from dualsr_deploy.backends.base import Backend, Capabilities
from dualsr_deploy.errors import BackendUnavailableError, InputError
from dualsr_deploy.runtimes import check_bf16, import_openvino

# the inference-precision hint per precision; int8 is the IR's own (converted from an INT8 graph), f32 around it
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def openvino_device(device: str) -> str:
    """An OpenVINO device name from a ``--device`` value: ``cpu`` → ``CPU``; ``GPU``, ``GPU.1``, ``NPU`` … as given."""
    return "CPU" if device.lower() in ("cpu", "") else device.upper()


class OpenVinoBackend(Backend):
    """Runs the IR ``path`` (checked against its manifest) on OpenVINO ``device`` in ``precision``."""

    def __init__(
        self, path: str | os.PathLike[str], *, device: str = "cpu", precision: str = "fp32", threads: int | None = None
    ) -> None:
        if precision not in OPENVINO_PRECISIONS:
            raise InputError(f"the openvino backend runs fp32, bf16 or int8; got --precision {precision}")
        self.path = Path(path)
        self.manifest = manifest = check_ir(self.path)
        if (precision == "int8") != (manifest.get("precision") == "int8"):  # the label is the IR's, never a hint's
            raise InputError(
                f"{self.path} is {manifest.get('precision')} IR; --precision {precision} runs "
                + ("IR converted from an INT8 graph (dualsr export --int8)" if precision == "int8" else "fp32 IR")
            )
        self.chunk = chunk_bands(manifest)
        self._device = openvino_device(device)
        if precision == "bf16":
            check_bf16(self._device)
        self._precision = precision
        self._threads = threads
        self._model: Any = None  # the IR as read; compiled for each call's shapes (_infer)
        self._compiled: Any = None
        self._request: Any = None
        self._shapes: dict[str, list[int]] | None = None
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns
        self.capabilities = Capabilities(
            name=f"openvino-{self._device.lower()}-{precision}",
            device="cpu",
            precision=precision,
            scale=int(str(manifest["scale"])),
            bands=None if self.chunk is not None else int(str(manifest["bands"])),  # a chunk graph: any count
        )

    def open(self) -> None:
        if self._model is not None:
            return
        ov = import_openvino()
        core = ov.Core()
        family = self._device.split(".")[0]
        if not any(name.split(".")[0] == family for name in core.available_devices):
            raise BackendUnavailableError(
                f"OpenVINO {str(ov.__version__).split('-')[0]} has no {self._device} device here (available: "
                f"{', '.join(core.available_devices) or 'none'})"
            )
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[self._precision]}
        if self._threads is not None and family == "CPU":
            config["INFERENCE_NUM_THREADS"] = self._threads
        if family == "CPU" and "ENABLE_CPU_PINNING" in core.get_property("CPU", "SUPPORTED_PROPERTIES"):
            # Threads free to move: beside two busy loops on 2 cores, a 96² × 285 window (bf16, band-chunk IR, median
            # of 5) took 3.58-4.62 s unpinned against 5.99-6.57 s pinned; quiet, 1.52-1.69 against 1.51-1.63 s.
            config["ENABLE_CPU_PINNING"] = False
        try:
            model = core.read_model(str(self.path))
            self._compile(core, model, config, None)  # with its own shapes: what cannot compile fails here
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendUnavailableError(
                f"{self.path}: OpenVINO could not compile it for {self._device} ({type(exc).__name__}: {exc})"
            ) from exc
        self._core, self._model, self._config = core, model, config
        if self.chunk is not None:  # a band-chunk IR: its inputs as its manifest says
            shapes = {}
            for port in model.inputs:
                dims = port.get_partial_shape()
                shapes[port.get_any_name()] = [d.get_length() if d.is_static else "?" for d in dims]
            planes, state = (shapes.get(name, []) for name in CHUNK_INPUTS[:2])
            check_graph_shapes(self.path, planes, state, self.chunk, int(str(self.manifest["state_channels"])))

    def _compile(self, core: Any, model: Any, config: dict[str, Any], shapes: dict[str, list[int]] | None) -> None:
        """Compile ``model`` (with ``shapes`` fixed: a copy reshaped to them) and make its infer request."""
        if shapes is not None:
            model = model.clone()
            model.reshape(shapes)
        self._compiled = core.compile_model(model, self._device, config)
        self._request = self._compiled.create_infer_request()
        self._outputs = [self._compiled.output(name) for name in CHUNK_OUTPUTS] if self.chunk is not None else []
        self._shapes = shapes

    def _infer(self, inputs: dict[str, np.ndarray]) -> Any:
        """Infer ``inputs`` through the model compiled for their shapes. Compiled for static shapes a call runs faster
        than with the IR's free ones (one 128 × 160 window, 8-band chunk, bf16, 2-core Xeon: 77-79 against 93-97 ms
        a call) for ~0.1 s of compiling; only the last shape's compiled model is kept, as tiles share one window."""
        shapes = {name: list(value.shape) for name, value in inputs.items()}
        if shapes != self._shapes:
            self._compiled = self._request = self._shapes = None  # its memory goes before the next one's comes
            try:
                self._compile(self._core, self._model, self._config, shapes)
            except Exception as exc:
                raise BackendUnavailableError(
                    f"{self.path}: OpenVINO could not compile it for {self._device} at shapes {shapes} "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
        # the inputs as they are (C-contiguous float32 arrays, alive through the call) rather than copied in, and
        # the outputs as views of the request's own tensors, which the callers copy before the next call
        return self._request.infer(inputs, share_inputs=True, share_outputs=True)

    def close(self) -> None:
        self._model = self._compiled = self._request = None
        self._shapes = None

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        if self._model is None:
            self.open()
        if self.chunk is not None:
            with self._lock:
                return run_in_chunks(
                    lr,
                    rule=str(self.manifest["neighbour_rule"]),
                    scale=self.capabilities.scale,
                    chunk=self.chunk,
                    state_channels=int(str(self.manifest["state_channels"])),
                    call=self._chunk_call,
                )
        array = np.ascontiguousarray(lr.detach().cpu().numpy(), dtype=np.float32)
        with self._lock:
            result = self._infer({INPUT_NAME: array})
            out = np.array(next(iter(result.values())), dtype=np.float32, copy=True)
        return torch.from_numpy(out)

    def _chunk_call(self, planes: np.ndarray, state: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = self._infer(dict(zip(CHUNK_INPUTS, (planes, state, first), strict=True)))
        residual, state_out = (np.array(result[output], dtype=np.float32, copy=True) for output in self._outputs)
        return residual, state_out
