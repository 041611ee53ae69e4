"""TensorRT: what can be checked without it here, and the real build (marked ``trt``, skips without TensorRT)."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.artefacts import sha256_of
from dualsr_deploy.errors import BackendUnavailableError
from dualsr_deploy.export.onnx import ExportError, torch2onnx
from dualsr_deploy.export.recipes import TensorRTProfile
from dualsr_deploy.export.tensorrt import onnx2engine
from dualsr_deploy.runtimes import tensorrt_version
from tests.export.fake_tensorrt import make_fake_tensorrt
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


# --- the builder's control flow against a recording stand-in of TensorRT 10 and 11 (not TensorRT itself) ---


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Callable[..., types.ModuleType]:
    """Install a fake ``tensorrt`` of a given version and make torch report an H100 (sm 9.0)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (9, 0))

    def install(version: str, **kwargs: bool) -> types.ModuleType:
        module = make_fake_tensorrt(version, **kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        return module

    return install


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("graphs")
    core = fold_coarsr(random_coarsr(2), "paper")
    return {p: torch2onnx(core, folder / f"m_{p}.onnx", bands=6, precision=p) for p in ("fp32", "fp16")}


PROFILE = TensorRTProfile(min_tile=(1, 8, 8), opt_tile=(2, 16, 16), max_tile=(4, 32, 32), workspace_mib=256)


def test_trt10_fp32_plan_is_strongly_typed_with_profile_cache_and_manifest(
    fake_gpu: Callable[..., types.ModuleType], graphs: dict[str, Path], tmp_path: Path
) -> None:
    trt = fake_gpu("10.13.0.35")
    steps: list[tuple[str, int, int]] = []
    plan = onnx2engine(
        graphs["fp32"], tmp_path / "m.plan", precision="fp32", profile=PROFILE, progress=lambda *a: steps.append(a)
    )
    calls = trt.calls
    assert ("network_flags", 2) in calls  # 1 << STRONGLY_TYPED
    assert not [c for c in calls if c[0] == "flag"]
    assert ("workspace", 0, 256 << 20) in calls
    assert ("profile", {"lr": ((1, 6, 8, 8), (2, 6, 16, 16), (4, 6, 32, 32))}) in calls
    assert steps == [("Building engine", 0, 2), ("Building engine", 1, 2), ("Building engine", 2, 2)]
    assert plan.read_bytes() == b"PLAN"
    manifest = json.loads(plan.with_name("m.plan.json").read_text())
    assert manifest["gpu"] == "NVIDIA H100 80GB HBM3"
    assert manifest["compute_capability"] == "9.0"
    assert manifest["tensorrt"] == "10.13.0.35"
    assert manifest["typing"] == "strong"
    assert manifest["onnx_sha256"] == sha256_of(graphs["fp32"])
    assert manifest["profile"]["max"] == [4, 6, 32, 32]
    # The timing cache is kept per GPU and TensorRT version, and the next build starts from it.
    (cache,) = tmp_path.glob("timing-*.cache")
    assert "sm9.0" in cache.name
    assert "trt10.13.0.35" in cache.name
    onnx2engine(graphs["fp32"], tmp_path / "m2.plan", precision="fp32", profile=PROFILE)
    assert [c[1] for c in calls if c[0] == "cache_in"] == [b"", b"+tuned"]


def test_trt10_builds_fp16_from_the_fp32_graph_with_weak_typing(
    fake_gpu: Callable[..., types.ModuleType], graphs: dict[str, Path], tmp_path: Path
) -> None:
    trt = fake_gpu("10.13.0.35")
    plan = onnx2engine(graphs["fp32"], tmp_path / "m.plan", precision="fp16", profile=PROFILE)
    assert ("flag", "FP16") in trt.calls
    assert ("network_flags", 0) in trt.calls
    assert json.loads(plan.with_name("m.plan.json").read_text())["typing"] == "weak (BuilderFlag.FP16)"


def test_trt11_takes_precision_from_the_graph(
    fake_gpu: Callable[..., types.ModuleType], graphs: dict[str, Path], tmp_path: Path
) -> None:
    trt = fake_gpu("11.4.0.1")
    with pytest.raises(ExportError, match="build the fp16 plan from the fp16 ONNX"):
        onnx2engine(graphs["fp32"], tmp_path / "m.plan", precision="fp16", profile=PROFILE)
    plan = onnx2engine(graphs["fp16"], tmp_path / "m.plan", precision="fp16", profile=PROFILE)
    assert ("network_flags", 2) in trt.calls
    assert not [c for c in trt.calls if c[0] == "flag"]
    assert json.loads(plan.with_name("m.plan.json").read_text())["precision"] == "fp16"


def test_parser_and_builder_failures_are_clear_and_leave_nothing(
    fake_gpu: Callable[..., types.ModuleType], graphs: dict[str, Path], tmp_path: Path
) -> None:
    fake_gpu("10.13.0.35", parse_ok=False)
    with pytest.raises(ExportError, match="parser refused the graph: unsupported node"):
        onnx2engine(graphs["fp32"], tmp_path / "m.plan", precision="fp32", profile=PROFILE)
    fake_gpu("10.13.0.35", build_ok=False)
    with pytest.raises(ExportError, match="could not build a fp32 plan"):
        onnx2engine(graphs["fp32"], tmp_path / "m.plan", precision="fp32", profile=PROFILE)
    assert not list(tmp_path.glob("*.plan*"))
    with pytest.raises(ExportError, match="cannot build a fp32 plan from a fp16 graph"):
        onnx2engine(graphs["fp16"], tmp_path / "m.plan", precision="fp32", profile=PROFILE)


def test_plan_from_another_gpu_or_version_or_tampered_is_refused(
    fake_gpu: Callable[..., types.ModuleType],
    graphs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dualsr_deploy.export.tensorrt import check_plan_manifest

    fake_gpu("10.13.0.35")
    plan = onnx2engine(graphs["fp32"], tmp_path / "m.plan", precision="fp32", profile=PROFILE)
    assert check_plan_manifest(plan)["gpu"] == "NVIDIA H100 80GB HBM3"
    fake_gpu("10.14.1.48")
    with pytest.raises(ExportError, match=r"built for tensorrt '10.13.0.35', running on '10.14.1.48'.*rebuild"):
        check_plan_manifest(plan)
    fake_gpu("10.13.0.35")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA A100-SXM4-80GB")
    with pytest.raises(ExportError, match="built for gpu 'NVIDIA H100 80GB HBM3', running on 'NVIDIA A100"):
        check_plan_manifest(plan)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA H100 80GB HBM3")
    plan.write_bytes(b"PLAN but changed")
    with pytest.raises(ExportError, match="changed or damaged"):
        check_plan_manifest(plan)


def test_export_builds_a_plan_per_graph(fake_gpu: Callable[..., types.ModuleType], tmp_path: Path) -> None:
    from dualsr_deploy.export.build import export_variant
    from dualsr_deploy.export.recipes import default_recipe

    fake_gpu("11.4.0.1")
    steps: list[tuple[str, int, int]] = []
    result = export_variant(
        default_recipe(4, bands=31), out_dir=tmp_path, tensorrt="require", build_progress=lambda *a: steps.append(a)
    )
    kinds = [(a.kind, a.precision, a.path.name) for a in result.artefacts]
    assert kinds == [
        ("onnx", "fp32", "coarsr_x4_c31_fp32.onnx"),
        ("onnx", "fp16", "coarsr_x4_c31_fp16.onnx"),
        ("tensorrt", "fp32", "coarsr_x4_c31_fp32.sm90.plan"),
        ("tensorrt", "fp16", "coarsr_x4_c31_fp16.sm90.plan"),
    ]
    assert all(a.manifest.is_file() for a in result.artefacts)
    assert steps
    assert result.skipped == ()


def test_export_without_tensorrt_says_why_or_fails_when_required(tmp_path: Path) -> None:
    from dualsr_deploy.export.build import export_variant
    from dualsr_deploy.export.recipes import default_recipe

    if tensorrt_version() is not None and torch.cuda.is_available():
        pytest.skip("TensorRT and a GPU are available here")
    recipe = default_recipe(4).with_overrides(precisions=("fp32",))
    result = export_variant(recipe, out_dir=tmp_path)
    assert [a.kind for a in result.artefacts] == ["onnx"]
    assert any(line.startswith("tensorrt: ") for line in result.skipped)
    with pytest.raises(ExportError, match="TensorRT plans were required"):
        export_variant(recipe, out_dir=tmp_path / "again", tensorrt="require")
    assert not list((tmp_path / "again").rglob("*.onnx"))


def test_backends_lists_trt_when_tensorrt_and_a_gpu_are_there(fake_gpu: Callable[..., types.ModuleType]) -> None:
    from dualsr_deploy.backends.status import backend_statuses

    fake_gpu("10.13.0.35")
    (row,) = [r for r in backend_statuses() if r.name == "trt"]
    assert row.available
    assert "10.13.0.35" in row.detail
