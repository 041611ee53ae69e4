"""Cross-backend verification, Polygraphy style: every backend against torch float64, with stated tolerances."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dualsr_deploy.archs.coarsr import bicubic_upsample
from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.backends.base import Backend


@dataclass(frozen=True)
class Tolerance:
    """Bounds on |backend − float64 reference| over SR values in ~[0, 1]."""

    max_abs: float
    mean_abs: float


# fp32: float32 rounding through ~25 layers stays ≤ 1e-5 on real weights; 1e-4 leaves room for other kernels
# (cuDNN/TensorRT tactics, Winograd). fp16/bf16: 10/7 mantissa bits, so ~1e-3 per value is expected; the mean bound
# is the 1e-2 and the max allows isolated outliers at edges.
TOLERANCES = {
    "fp32": Tolerance(max_abs=1e-4, mean_abs=1e-5),
    "fp16": Tolerance(max_abs=5e-2, mean_abs=1e-2),
    "bf16": Tolerance(max_abs=1e-1, mean_abs=2e-2),
}


@dataclass(frozen=True)
class Comparison:
    backend: str
    precision: str
    max_abs: float
    mean_abs: float
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        return self.max_abs <= self.tolerance.max_abs and self.mean_abs <= self.tolerance.mean_abs


def reference_sr(core: FoldedCoarSR, lr: torch.Tensor) -> torch.Tensor:
    """SR in float64 on CPU: the yardstick for every backend."""
    reference = copy.deepcopy(core).cpu().double().use_channels_last(False)
    reference.pixels_per_call = None
    lr64 = lr.detach().cpu().double()
    with torch.no_grad():
        return reference(lr64) + bicubic_upsample(lr64, core.scale)


def verify_backends(
    core: FoldedCoarSR, backends: Sequence[Backend], inputs: Sequence[torch.Tensor]
) -> list[Comparison]:
    """Run every backend on every input and compare with :func:`reference_sr`; one row per backend."""
    expected = [reference_sr(core, lr) for lr in inputs]
    rows = []
    for backend in backends:
        worst, total, count = 0.0, 0.0, 0
        for lr, reference in zip(inputs, expected, strict=True):
            error = (backend.run(lr.float()).detach().cpu().double() - reference).abs()
            worst = max(worst, error.max().item())
            total += error.sum().item()
            count += error.numel()
        precision = backend.capabilities.precision
        rows.append(Comparison(backend.capabilities.name, precision, worst, total / count, TOLERANCES[precision]))
    return rows
