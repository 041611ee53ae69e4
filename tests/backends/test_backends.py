"""The backend contract: capabilities, shape checks, lifecycle, and the TensorRT detection rule."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from dualsr_deploy.archs.coarsr import bicubic_upsample
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.backends.base import Backend, Capabilities, ShapeOutOfProfileError
from dualsr_deploy.backends.status import backend_statuses
from dualsr_deploy.backends.torch_backend import TorchBackend
from dualsr_deploy.errors import InputError
from dualsr_deploy.runtimes import tensorrt_version
from tests.helpers import random_coarsr


class _ZeroBackend(Backend):
    """A backend whose residual is zero: run() must then return exactly the bicubic skip."""

    def __init__(self, caps: Capabilities) -> None:
        self.capabilities = caps
        self.opened = False

    def open(self) -> None:
        self.opened = True

    def close(self) -> None:
        self.opened = False

    def residual(self, lr: torch.Tensor) -> torch.Tensor:
        s = self.capabilities.scale
        return torch.zeros(lr.shape[0], lr.shape[1], s * lr.shape[2], s * lr.shape[3])


def test_run_adds_the_bicubic_skip_and_lifecycle_works() -> None:
    backend = _ZeroBackend(Capabilities("zero", "cpu", "fp32", scale=2))
    lr = torch.rand(1, 5, 6, 6)
    with backend:
        assert backend.opened
        assert torch.equal(backend.run(lr), bicubic_upsample(lr, 2))
    assert not backend.opened


def test_tiles_outside_the_profile_are_refused_with_a_fix() -> None:
    caps = Capabilities("eng", "cpu", "fp32", scale=2, bands=5, min_shape=(1, 16, 16), max_shape=(4, 64, 64))
    backend = _ZeroBackend(caps)
    backend.run(torch.rand(2, 5, 32, 32))
    with pytest.raises(ShapeOutOfProfileError, match=r"exceeds .* 4×64×64; rebuild with a larger --max-tile"):
        backend.run(torch.rand(1, 5, 128, 32))
    with pytest.raises(ShapeOutOfProfileError, match="below the plan's profile minimum"):
        backend.run(torch.rand(1, 5, 8, 32))
    with pytest.raises(ShapeOutOfProfileError, match="exceeds"):
        backend.run(torch.rand(5, 5, 32, 32))


def test_torch_backend_precisions() -> None:
    core = fold_coarsr(random_coarsr(2, n_feats=6), "paper")
    lr = torch.rand(1, 6, 8, 8)
    with TorchBackend(core) as fp32, TorchBackend(core, precision="bf16") as bf16:
        reference = fp32.run(lr)
        low = bf16.run(lr)
    assert low.dtype == torch.float32
    assert (low - reference).abs().mean().item() <= 0.05 * reference.abs().mean().item()
    with pytest.raises(InputError, match="fp16 convolutions are not a CPU path"):
        TorchBackend(core, precision="fp16")


def test_stubs_alone_are_not_a_usable_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """tensorrt-stubs makes `import tensorrt` succeed with an empty module: that must not count as TensorRT."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    assert tensorrt_version() is None
    statuses = {row.name: row for row in backend_statuses()}
    assert not statuses["trt"].available
    assert statuses["torch-cpu"].available
