"""TensorRT: what can be checked without it here, and the real build (marked ``trt``, skips without TensorRT)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.backends.base import BackendUnavailableError
from dualsr_deploy.backends.registry import tensorrt_version
from dualsr_deploy.export.onnx import ExportError, torch2onnx
from dualsr_deploy.export.recipes import TensorRTProfile
from dualsr_deploy.export.tensorrt import onnx2engine
from tests.helpers import random_coarsr


@pytest.mark.skipif(tensorrt_version() is not None, reason="TensorRT is installed here")
def test_building_without_tensorrt_says_what_to_install(tmp_path: Path) -> None:
    path = torch2onnx(fold_coarsr(random_coarsr(2), "paper"), tmp_path / "m.onnx", bands=6)
    with pytest.raises(BackendUnavailableError, match=r"dualsr-deploy\[gpu\]"):
        onnx2engine(path, tmp_path / "m.plan", precision="fp32", profile=TensorRTProfile())


def test_plan_without_manifest_is_refused(tmp_path: Path) -> None:
    from dualsr_deploy.export.tensorrt import check_plan_manifest

    plan = tmp_path / "m.plan"
    plan.write_bytes(b"not a plan")
    with pytest.raises(ExportError, match="no manifest beside the plan"):
        check_plan_manifest(plan)


@pytest.mark.trt
@pytest.mark.gpu
def test_plan_matches_onnx_runtime(tmp_path: Path) -> None:
    if tensorrt_version() is None or not torch.cuda.is_available():
        pytest.skip("needs TensorRT and a CUDA GPU")
    from dualsr_deploy.backends.torch_backend import TorchBackend
    from dualsr_deploy.backends.trt_backend import TensorRTBackend

    core = fold_coarsr(random_coarsr(2, n_feats=8), "paper")
    onnx_path = torch2onnx(core, tmp_path / "m.onnx", bands=6)
    profile = TensorRTProfile(min_tile=(1, 8, 8), opt_tile=(2, 16, 16), max_tile=(2, 32, 32), workspace_mib=512)
    plan = onnx2engine(onnx_path, tmp_path / "m.plan", precision="fp32", profile=profile)
    lr = torch.rand(2, 6, 16, 12, device="cuda")
    with TensorRTBackend(plan) as trt_backend, TorchBackend(core, device="cuda") as torch_backend:
        expected = torch_backend.run(lr)
        assert (trt_backend.run(lr) - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()
