"""The ``torch`` backend: the folded cube model in eager PyTorch (optionally ``torch.compile``)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import torch

from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.backends.base import PRECISION_DTYPES, Backend, Capabilities
from dualsr_deploy.errors import BackendUnavailableError, InputError
from dualsr_deploy.models import default_pixels_per_call


@contextlib.contextmanager
def _ieee_fp32(enabled: bool) -> Iterator[None]:
    """fp32 that is fp32 on CUDA: cuDNN convolutions default to TF32 (10-bit mantissa) on Ampere and later, which put
    the fp32 output 7e-4 from the float64 reference on an H200 (tolerance 1e-4); this turns TF32 off for the call."""
    if not enabled:
        yield
        return
    matmul, convolution = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, convolution


class TorchBackend(Backend):
    """Runs a :class:`FoldedCoarSR` on ``device`` in ``precision`` (fp32, fp16, bf16, bf16-mixed or fp64).

    Reduced precisions compute in that dtype; inputs and outputs stay float32. ``bf16-mixed`` runs the body and the
    band scan in bf16 and the upsampling tail in float32 (:meth:`FoldedCoarSR.widen_tail`).
    """

    def __init__(
        self,
        core: FoldedCoarSR,
        *,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        if precision not in PRECISION_DTYPES:
            raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_DTYPES)}")
        target = torch.device(device)
        if target.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("torch backend: CUDA was requested but torch sees no CUDA device")
        if target.type == "cpu" and precision == "fp16":
            raise InputError("torch backend: fp16 convolutions are not a CPU path; use fp32 or bf16 on CPU")
        self._source = core
        self._dtype = PRECISION_DTYPES[precision]
        self._wide_tail = precision == "bf16-mixed"
        self._compile = compile
        self._model: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.capabilities = Capabilities(
            name=f"torch-{target.type}-{precision}",
            device=str(target),
            precision=precision,
            scale=core.scale,
            device_tensors=True,
        )

    def open(self) -> None:
        if self._model is not None:
            return
        core = copy.deepcopy(self._source).to(self.device, self._dtype)
        if self._wide_tail:
            core.widen_tail()
        core.use_channels_last(self.device.type == "cpu")
        core.pixels_per_call = default_pixels_per_call(self.device)
        core.eval().requires_grad_(False)
        self._model = torch.compile(core.prepare_tail()) if self._compile else core

    def close(self) -> None:
        self._model = None

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        if self._model is None:
            self.open()
        assert self._model is not None
        with torch.inference_mode(), _ieee_fp32(self.device.type == "cuda" and self._dtype == torch.float32):
            return self._model(lr.to(self._dtype)).float()
