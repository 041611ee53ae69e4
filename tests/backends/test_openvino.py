"""The openvino backend, ``dualsr export --openvino``, and ``--precision auto``/bf16 checks on the CLI."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dualsr_deploy.artefacts import check_ir
from dualsr_deploy.backends import create
from dualsr_deploy.backends.precision import auto_precision
from dualsr_deploy.checkpoint import write_checkpoint
from dualsr_deploy.cli.main import app
from dualsr_deploy.data import write_scene
from dualsr_deploy.errors import BackendUnavailableError, ExportError, InputError
from dualsr_deploy.export.build import export_variant
from dualsr_deploy.export.recipes import default_recipe
from dualsr_deploy.optional import find
from dualsr_deploy.runtimes import CPU_BF16_ENV, cpu_native_bf16
from tests.helpers import random_coarsr
from tests.infer.conftest import lr_scene

runner = CliRunner()
HAVE_OPENVINO = find("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO is not installed (the openvino extra)")


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """×2 IR of the shipped weights, 8 bands, exported and verified against torch float64."""
    if not HAVE_OPENVINO:
        pytest.skip("OpenVINO is not installed (the openvino extra)")
    out = tmp_path_factory.mktemp("engines")
    result = export_variant(default_recipe(2, bands=8), out_dir=out, verify=True, tensorrt="off", openvino=True)
    names = {c.backend for c in result.verification}
    assert {"torch-cpu-fp32", "onnx-cpu-fp32", "openvino-cpu-fp32"} <= names
    if cpu_native_bf16():
        assert "openvino-cpu-bf16" in names
    assert all(c.passed for c in result.verification)
    (xml,) = [a.path for a in result.artefacts if a.kind == "openvino"]
    return xml


@needs_openvino
def test_the_ir_and_its_manifest(ir: Path) -> None:
    manifest = json.loads(ir.with_name(ir.name + ".json").read_text())
    assert manifest["kind"] == "openvino"
    assert (manifest["scale"], manifest["bands"], manifest["precision"]) == ("2", "8", "fp32")
    assert len(manifest["checkpoint_sha256"]) == 64
    assert ir.with_suffix(".bin").is_file()
    assert check_ir(ir)["graph"] == ir.with_suffix(".onnx").name


@needs_openvino
def test_openvino_matches_onnx_runtime(ir: Path) -> None:
    lr = torch.rand(2, 8, 11, 13, generator=torch.Generator().manual_seed(0))
    with create("onnx", artefact=ir.with_suffix(".onnx")) as onnx, create("openvino", artefact=ir) as openvino:
        expected = onnx.run(lr)
        got = openvino.run(lr)
        assert openvino.capabilities.name == "openvino-cpu-fp32"
        assert (openvino.capabilities.scale, openvino.capabilities.bands) == (2, 8)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@needs_openvino
def test_a_damaged_ir_or_an_unknown_device_is_refused(ir: Path, tmp_path: Path) -> None:
    copy = tmp_path / ir.name
    copy.write_bytes(ir.read_bytes())
    copy.with_name(copy.name + ".json").write_bytes(ir.with_name(ir.name + ".json").read_bytes())
    with pytest.raises(ExportError, match=r"need the \.xml and its \.bin"):
        check_ir(copy)
    copy.with_suffix(".bin").write_bytes(ir.with_suffix(".bin").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ExportError, match="changed or damaged"):
        create("openvino", artefact=copy)
    with pytest.raises(BackendUnavailableError, match="no NPU3 device"):
        create("openvino", artefact=ir, device="NPU3").open()
    with pytest.raises(InputError, match="fp32 or bf16"):
        create("openvino", artefact=ir, precision="fp16")
    with pytest.raises(InputError, match="runs IR converted from an INT8 graph"):  # never fp32 IR labelled int8
        create("openvino", artefact=ir, precision="int8")
    with pytest.raises(InputError, match="not CUDA"):
        create("openvino", artefact=ir, device="cuda")


@needs_openvino
def test_infer_with_openvino_and_an_ir_from_other_weights(tmp_path: Path) -> None:
    archive = tmp_path / "lr"
    write_scene(archive / "a.h5", lr_scene(0, 12, 6, scale=2))
    engines = tmp_path / "engines"
    done = runner.invoke(
        app, ["infer", str(archive), "-o", str(tmp_path / "sr"), "--scale", "2", "--stage", "coarse",
              "--backend", "openvino", "--precision", "fp32", "--engines", str(engines)],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "sr" / "manifest.jsonl").read_text().splitlines()[-1])
    assert record["status"] == "ok"
    assert record["backend"] == "openvino-cpu-fp32"
    assert list(engines.rglob("*.xml"))  # converted on first need
    other = write_checkpoint(random_coarsr(2), tmp_path / "other.safetensors", neighbour_rule="paper")
    command = ["infer", str(archive), "--scale", "2", "--stage", "coarse", "--backend", "openvino", "--precision",
               "fp32", "--engines", str(engines), "--weights", str(other)]  # fmt: skip
    both = runner.invoke(app, [*command, "-o", str(tmp_path / "sr2")])
    assert both.exit_code == 0, both.output  # other weights: their own variant folder beside the first
    folders = sorted({xml.parent for xml in engines.rglob("*.xml")})
    assert len(folders) == 2
    from dualsr_deploy.checkpoint import read_checkpoint

    digest = read_checkpoint(other)[1].sha256[:12]
    (mine,) = (f for f in folders if f.name.endswith(digest))
    (shipped,) = (f for f in folders if f != mine)
    for file in shipped.iterdir():  # the shipped weights' IR copied over the other weights' by hand
        shutil.copy(file, mine / file.name)
    refused = runner.invoke(app, [*command, "-o", str(tmp_path / "sr3")])
    assert refused.exit_code == 2
    assert "exported from other weights" in " ".join(refused.output.split())


def test_openvino_without_the_extra_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    archive = tmp_path / "lr"
    write_scene(archive / "a.h5", lr_scene(0, 12, 6, scale=2))
    result = runner.invoke(
        app, ["infer", str(archive), "-o", str(tmp_path / "sr"), "--scale", "2", "--stage", "coarse",
              "--backend", "openvino", "--engines", str(tmp_path / "engines")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "pip install 'dualsr-deploy[openvino]'" in " ".join(result.output.split())


def test_bf16_on_a_cpu_without_native_bf16_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_BF16_ENV, "0")  # simulate the probe
    archive = tmp_path / "lr"
    write_scene(archive / "a.h5", lr_scene(0, 12, 6, scale=2))
    result = runner.invoke(
        app, ["infer", str(archive), "-o", str(tmp_path / "sr"), "--scale", "2", "--stage", "coarse", "--precision",
              "bf16", "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "would be emulated" in " ".join(result.output.split())
    assert auto_precision("torch", "cpu").precision == "fp32"
    assert auto_precision("openvino", "cpu").precision == "fp32"


def test_precision_auto_is_printed_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--precision auto reads the quality rule's record beside the weights: bf16 where it passed, fp32 and the
    reason where there is none (issue #45); printed, and kept in each manifest record."""
    from dualsr_deploy.backends.fidelity import FidelityFile, FidelityRecord, SceneDelta, file_sha256, record_path

    monkeypatch.setenv(CPU_BF16_ENV, "1")
    archive = tmp_path / "lr"
    write_scene(archive / "a.h5", lr_scene(0, 12, 6, scale=2))
    weights = write_checkpoint(random_coarsr(2, n_feats=4), tmp_path / "x2.safetensors", neighbour_rule="paper")

    def run(out: str) -> tuple[str, dict[str, str]]:
        result = runner.invoke(
            app, ["infer", str(archive), "-o", str(tmp_path / out), "--scale", "2", "--stage", "coarse",
                  "--device", "cpu", "--weights", str(weights)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        record = json.loads((tmp_path / out / "manifest.jsonl").read_text().splitlines()[-1])
        return " ".join(result.output.split()), record

    said, record = run("bare")
    assert "--precision auto → fp32 (no quality record beside x2.safetensors" in said
    assert record["backend"] == "torch-cpu-fp32"
    assert record["precision_choice"].startswith("--precision auto → fp32")

    scenes = (SceneDelta("s", "coarse", 40.0, 2.0, 39.999, 2.001),)
    measured = FidelityRecord(
        "torch", "bf16", "cpu-bf16", "test", "coarse", 2, None, None, 2.0, 1.0, "2026-12-06", {}, scenes
    )
    FidelityFile(weights.name, file_sha256(weights), [measured]).write(record_path(weights))
    said, record = run("passed")
    assert "--precision auto → bf16 (passed the quality rule" in said
    assert record["backend"] == "torch-cpu-bf16"
    assert auto_precision("openvino", "cpu", [weights]).precision == "fp32"  # measured for torch only
    assert auto_precision("onnx", "cpu", [weights]).precision == "fp32"
    assert auto_precision("torch", "cuda", [weights]).precision == "fp32"  # a CPU's record says nothing of a GPU


@needs_openvino
def test_cpu_threads_are_not_pinned(ir: Path) -> None:
    """Pinned threads cannot leave cores that busy neighbours hold (beside two busy loops: 6.0-6.6 s pinned against
    3.6-4.6 s unpinned, quiet the same): the backend compiles with pinning off where OpenVINO has the property."""
    from dualsr_deploy.backends.openvino_backend import OpenVinoBackend

    backend = create("openvino", artefact=ir)
    assert isinstance(backend, OpenVinoBackend)
    with backend:
        compiled = backend._compiled  # what OpenVINO compiled, not what was asked for
        assert compiled.get_property("ENABLE_CPU_PINNING") is False
