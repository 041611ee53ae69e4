"""The ``onnx`` backend: an exported graph in ONNX Runtime (CPU, CUDA or TensorRT execution provider).

On CUDA, torch tensors are bound to the session directly (IOBinding): no host round trip. A band-chunk graph
(what a run makes for the CPU) is called a chunk of bands at a time (:mod:`dualsr_deploy.backends.band_chunks`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualsr_deploy.artefacts import CHUNK_INPUTS, CHUNK_OUTPUTS, INPUT_NAME, OUTPUT_NAME, chunk_bands, graph_metadata
from dualsr_deploy.backends.band_chunks import check_graph_shapes, run_in_chunks
from dualsr_deploy.backends.base import Backend, Capabilities
from dualsr_deploy.errors import BackendUnavailableError, InputError
from dualsr_deploy.runtimes import ORT_PROVIDERS, import_onnxruntime


class OnnxBackend(Backend):
    """Runs an ONNX graph written by :func:`dualsr_deploy.export.onnx.torch2onnx` with ``provider``."""

    def __init__(self, path: str | os.PathLike[str], *, provider: str = "cpu", threads: int | None = None) -> None:
        if provider not in ORT_PROVIDERS:
            raise InputError(f"unknown ONNX Runtime provider {provider!r}; choose one of {', '.join(ORT_PROVIDERS)}")
        self.path = Path(path)
        self.meta = meta = graph_metadata(self.path)
        self.chunk = chunk_bands(meta)
        self._provider = provider
        self._threads = threads
        self._session: Any = None
        device = "cpu" if provider == "cpu" else "cuda"
        self.capabilities = Capabilities(
            name=f"onnx-{provider}-{meta['precision']}",
            device=device,
            precision=meta["precision"],
            scale=int(meta["scale"]),
            bands=None if self.chunk is not None else int(meta["bands"]),  # a chunk graph runs any count
            device_tensors=device == "cuda" and self.chunk is None,
        )

    def open(self) -> None:
        if self._session is not None:
            return
        ort = import_onnxruntime()
        wanted = ORT_PROVIDERS[self._provider]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"ONNX Runtime {ort.__version__} has no {wanted} here (available: "
                f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu for CUDA/TensorRT"
            )
        options = ort.SessionOptions()
        if self._threads is not None:
            options.intra_op_num_threads = self._threads
        # waiting threads sleep rather than spin: a spinning pool collapses when another job shares the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self._provider == "cpu":
            # No memory pattern: its one planned block for every activation of the graph held 1.7x the memory
            # (a 96-px window x 285 bands: 5.27 against 3.06 GiB peak) for 4 % less time per call, and its second
            # call at a shape, the one that plans, took twice as long. The arena still reuses the buffers.
            options.enable_mem_pattern = False
        self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=[wanted])
        if self.chunk is not None:
            shapes = {node.name: node.shape for node in self._session.get_inputs()}
            planes, state = (shapes.get(name, ()) for name in CHUNK_INPUTS[:2])
            check_graph_shapes(self.path, planes, state, self.chunk, int(self.meta["state_channels"]))

    def close(self) -> None:
        self._session = None

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        if self._session is None:
            self.open()
        lr = lr.contiguous()
        if self.chunk is not None:
            return run_in_chunks(
                lr,
                rule=self.meta["neighbour_rule"],
                scale=self.capabilities.scale,
                chunk=self.chunk,
                state_channels=int(self.meta["state_channels"]),
                call=self._chunk_call,
            )
        if lr.device.type == "cpu":
            (out,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: lr.numpy()})
            return torch.from_numpy(out)
        out = self.empty_output(lr)
        binding = self._session.io_binding()
        index = lr.device.index or 0
        binding.bind_input(INPUT_NAME, "cuda", index, np.float32, tuple(lr.shape), lr.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", index, np.float32, tuple(out.shape), out.data_ptr())
        torch.cuda.current_stream(lr.device).synchronize()  # ORT runs on its own stream
        self._session.run_with_iobinding(binding)
        return out

    def _chunk_call(self, planes: np.ndarray, state: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        residual, state_out = self._session.run(
            list(CHUNK_OUTPUTS), dict(zip(CHUNK_INPUTS, (planes, state, first), strict=True))
        )
        return residual, state_out
