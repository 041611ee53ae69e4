"""The ``trt`` backend: a TensorRT plan run with ``execute_async_v3`` on torch CUDA tensors (no pycuda/cupy).

Like the builder, written against TensorRT 10/11's documented API and not yet run or type-checked anywhere (no
TensorRT or GPU on the development machines).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dualsr_deploy.artefacts import INPUT_NAME, OUTPUT_NAME, check_plan_manifest
from dualsr_deploy.backends.base import Backend, Capabilities
from dualsr_deploy.errors import ExportError
from dualsr_deploy.runtimes import require_tensorrt


class TensorRTBackend(Backend):
    """Runs a plan written by ``dualsr export`` (:func:`dualsr_deploy.export.tensorrt.onnx2engine`); refuses
    mismatched plans."""

    def __init__(self, plan_path: str | os.PathLike[str]) -> None:
        self.path = Path(plan_path)
        manifest = check_plan_manifest(self.path)
        profile = manifest["profile"]
        self.capabilities = Capabilities(
            name=f"trt-{manifest['precision']}",
            device="cuda",
            precision=manifest["precision"],
            scale=int(manifest["scale"]),
            bands=int(manifest["bands"]),
            min_shape=(profile["min"][0], profile["min"][2], profile["min"][3]),
            max_shape=(profile["max"][0], profile["max"][2], profile["max"][3]),
            device_tensors=True,
        )
        self._engine: Any = None
        self._context: Any = None

    def open(self) -> None:
        if self._context is not None:
            return
        require_tensorrt()
        import tensorrt as trt

        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ExportError(
                f"{self.path}: TensorRT could not deserialise the plan (corrupt, or built by another TensorRT); "
                "rebuild it with dualsr export"
            )
        self._context = self._engine.create_execution_context()

    def close(self) -> None:
        self._context = None
        self._engine = None

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        if self._context is None:
            self.open()
        lr = lr.contiguous()
        out = self.empty_output(lr)
        self._context.set_input_shape(INPUT_NAME, tuple(lr.shape))
        self._context.set_tensor_address(INPUT_NAME, lr.data_ptr())
        self._context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        stream = torch.cuda.current_stream(lr.device)
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        return out
