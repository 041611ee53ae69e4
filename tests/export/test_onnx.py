"""ONNX export: numbers equal to torch, metadata, dynamic shapes, TensorRT operator coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.backends.onnx_backend import OnnxBackend
from dualsr_deploy.backends.torch_backend import TorchBackend
from dualsr_deploy.errors import InputError
from dualsr_deploy.export.onnx import ExportError, onnx_metadata, torch2onnx
from dualsr_deploy.export.operators import read_operator_table, unsupported_operators
from dualsr_deploy.models import load_reference
from tests.helpers import random_coarsr

FIXTURE_TOLERANCE = 1e-4  # the bound for ONNX Runtime CPU vs the published outputs (observed ~3e-7)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("rule", ["paper", "reference"])
def test_onnx_runtime_reproduces_published_outputs(
    shared_reference: Path, tmp_path: Path, scale: int, rule: str
) -> None:
    model, info = load_reference(shared_reference / "coarsr" / f"coarsr_x{scale}_f16_b8.pth")
    fixture = np.load(shared_reference / "coarsr" / f"coarsr_x{scale}_f16_b8.npz")
    core = fold_coarsr(model, rule)  # type: ignore[arg-type]
    path = torch2onnx(core, tmp_path / "m.onnx", bands=8, metadata={"checkpoint_sha256": info.sha256})
    expected = torch.from_numpy(fixture[f"sr_{rule}"])
    with OnnxBackend(path) as backend:
        assert (backend.run(torch.from_numpy(fixture["lr"])) - expected).abs().max().item() <= FIXTURE_TOLERANCE
    half = torch2onnx(core, tmp_path / "h.onnx", bands=8, precision="fp16")
    with OnnxBackend(half) as backend:
        assert (backend.run(torch.from_numpy(fixture["lr"])) - expected).abs().mean().item() <= 1e-2
    meta = onnx_metadata(path)
    assert meta["scale"] == str(scale)
    assert meta["bands"] == "8"
    assert meta["neighbour_rule"] == rule
    assert meta["checkpoint_sha256"] == info.sha256


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_graphs_use_only_tensorrt_operators(shared_reference: Path, tmp_path: Path, scale: int) -> None:
    table = read_operator_table(shared_reference / "onnx_tensorrt_operators.md")
    path = torch2onnx(fold_coarsr(random_coarsr(scale), "paper"), tmp_path / "m.onnx", bands=31)
    model = onnx.load(str(path))
    assert unsupported_operators(model, table) == []
    assert "Resize" not in {node.op_type for node in model.graph.node}  # the bicubic skip stays outside


def test_operator_check_catches_unsupported_ops(shared_reference: Path) -> None:
    table = read_operator_table(shared_reference / "onnx_tensorrt_operators.md")
    node = onnx.helper.make_node("Bernoulli", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [], [])
    assert unsupported_operators(onnx.helper.make_model(graph), table) == ["Bernoulli"]


def test_dynamic_batch_and_size(tmp_path: Path) -> None:
    core = fold_coarsr(random_coarsr(2, n_feats=6), "reference")
    path = torch2onnx(core, tmp_path / "m.onnx", bands=5)
    with OnnxBackend(path) as onnx_backend, TorchBackend(core) as torch_backend:
        for shape in [(1, 5, 7, 9), (3, 5, 16, 5)]:
            lr = torch.rand(shape)
            got, expected = onnx_backend.run(lr), torch_backend.run(lr)
            assert got.shape == (shape[0], 5, 2 * shape[2], 2 * shape[3])
            assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
        # a CPU session plans no memory pattern (1.7x the peak on a 285-band window; performance.md)
        assert isinstance(onnx_backend, OnnxBackend)
        assert not onnx_backend._session.get_session_options().enable_mem_pattern


def test_band_count_is_fixed_per_export(tmp_path: Path) -> None:
    path = torch2onnx(fold_coarsr(random_coarsr(2), "paper"), tmp_path / "m.onnx", bands=6)
    with OnnxBackend(path) as backend, pytest.raises(InputError, match="exported for 6 bands"):
        backend.run(torch.rand(1, 7, 8, 8))


def test_corrupt_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ExportError, match=r"broken\.onnx: not a readable ONNX file"):
        OnnxBackend(path)


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="precision"):
        torch2onnx(fold_coarsr(random_coarsr(2), "paper"), tmp_path / "m.onnx", bands=6, precision="int8")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
