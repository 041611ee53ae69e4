"""The backend contract: open, run an LR tile batch, close, and say what you can do.

A *backend* is the runtime a user picks (``--backend torch|onnx|trt``) around one coarse model. Every backend
computes the coarse residual of a tile batch; :meth:`Backend.run` checks the batch against the
backend's capabilities and adds the bicubic skip in torch, on the backend's device. Callers decide on
:class:`Capabilities`, never on a backend's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

import torch

from dualsr_deploy.archs.coarsr import bicubic_upsample
from dualsr_deploy.archs.cube import check_lr
from dualsr_deploy.errors import BackendUnavailableError, InputError, ShapeOutOfProfileError

# Precisions by name, and the torch dtype each computes in (fp64: the verification reference).
# bf16-mixed: bf16 with the upsampling tail kept in float32 (FoldedCoarSR.widen_tail), the torch backend's only
PRECISION_DTYPES = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "bf16-mixed": torch.bfloat16,
    "fp64": torch.float64,
    "int8": torch.float32,  # an INT8 graph (dualsr export --int8) takes and returns float32; int8 is inside it
}


@dataclass(frozen=True)
class Capabilities:
    """What a backend accepts and where it runs.

    ``bands``: the fixed band count of an exported graph (``None``: any ≥ 5). ``min_shape``/``max_shape``:
    ``(batch, h, w)`` bounds of a TensorRT plan's profile (``None``: unbounded). ``device_tensors``: takes and returns
    tensors on ``device`` without host copies.
    """

    name: str
    device: str
    precision: str
    scale: int
    bands: int | None = None
    min_shape: tuple[int, int, int] | None = None
    max_shape: tuple[int, int, int] | None = None
    device_tensors: bool = False


class Backend(ABC):
    """Open/run/close lifecycle around one coarse model. Use as a context manager."""

    capabilities: Capabilities

    @abstractmethod
    def open(self) -> None:
        """Acquire the runtime's resources (sessions, TensorRT engines, device memory)."""

    @abstractmethod
    def close(self) -> None:
        """Release them; idempotent."""

    @abstractmethod
    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        """The coarse residual ``(B, C, s·h, s·w)`` for an LR batch already on :attr:`device`."""

    @property
    def device(self) -> torch.device:
        return torch.device(self.capabilities.device)

    def empty_output(self, lr: torch.Tensor) -> torch.Tensor:
        """An uninitialised float32 ``(B, C, s·h, s·w)`` buffer on ``lr``'s device, for runtimes that write into one."""
        s = self.capabilities.scale
        return torch.empty((lr.shape[0], lr.shape[1], s * lr.shape[2], s * lr.shape[3]), device=lr.device)

    def check(self, lr: torch.Tensor) -> None:
        """Raise a clear error if ``lr`` is outside what this backend accepts."""
        check_lr(lr, dtype=torch.float32)
        caps = self.capabilities
        if caps.bands is not None and lr.shape[1] != caps.bands:
            raise InputError(
                f"{caps.name}: this graph was exported for {caps.bands} bands, the input has {lr.shape[1]}; "
                f"export one with --bands {lr.shape[1]}"
            )
        shape = (lr.shape[0], lr.shape[2], lr.shape[3])
        text = "×".join(map(str, shape))
        if caps.min_shape is not None and any(v < lo for v, lo in zip(shape, caps.min_shape, strict=True)):
            raise ShapeOutOfProfileError(
                f"{caps.name}: tile batch {text} (batch×h×w) is below the plan's profile minimum "
                f"{'×'.join(map(str, caps.min_shape))}; use larger tiles or rebuild with a smaller --min-tile"
            )
        if caps.max_shape is not None and any(v > hi for v, hi in zip(shape, caps.max_shape, strict=True)):
            raise ShapeOutOfProfileError(
                f"{caps.name}: tile batch {text} (batch×h×w) exceeds the plan's profile maximum "
                f"{'×'.join(map(str, caps.max_shape))}; rebuild with a larger --max-tile or run with smaller tiles"
            )

    def run(self, lr: torch.Tensor) -> torch.Tensor:
        """SR ``(B, C, s·h, s·w)`` float32 (unclipped) for ``lr (B, C, h, w)`` float32 in [0, 1]."""
        self.check(lr)
        lr = lr.to(self.device)
        return self.residual(lr) + bicubic_upsample(lr, self.capabilities.scale)

    def __enter__(self) -> Backend:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


__all__ = [
    "PRECISION_DTYPES",
    "Backend",
    "BackendUnavailableError",
    "Capabilities",
    "ShapeOutOfProfileError",
]
