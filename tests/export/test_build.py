"""export_variant and ``dualsr export`` end to end on the published-format fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.errors import CheckpointError, ScaleMismatchError
from dualsr_deploy.export.build import export_variant
from dualsr_deploy.export.onnx import ExportError
from dualsr_deploy.export.recipes import default_recipe
from dualsr_deploy.runtimes import cpu_native_bf16

runner = CliRunner()


def test_export_writes_graphs_and_manifests_and_verifies(shared_reference: Path, tmp_path: Path) -> None:
    checkpoint = shared_reference / "coarsr" / "coarsr_x2_f16_b8.pth"
    recipe = default_recipe(2, bands=8).with_overrides(checkpoint=checkpoint)
    result = export_variant(
        recipe, out_dir=tmp_path, verify=True, operator_table=shared_reference / "onnx_tensorrt_operators.md"
    )
    assert [a.precision for a in result.artefacts] == ["fp32", "fp16"]
    for artefact in result.artefacts:
        manifest = json.loads(artefact.manifest.read_text())
        assert manifest["artefact"] == artefact.path.name
        assert manifest["bands"] == 8
        assert manifest["neighbour_rule"] == "reference"
        assert manifest["tensorrt_operator_check"] == "passed"
        assert len(manifest["checkpoint_sha256"]) == 64
    expected = {"torch-cpu-fp32", "onnx-cpu-fp32", "onnx-cpu-fp16"} | (
        {"torch-cpu-bf16"} if cpu_native_bf16() else set()
    )
    assert {c.backend for c in result.verification} == expected
    assert all(c.passed for c in result.verification)


def test_failed_verification_removes_what_it_wrote(
    shared_reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dualsr_deploy.export import verify

    monkeypatch.setitem(verify.TOLERANCES, "fp32", verify.Tolerance(max_abs=0.0, mean_abs=0.0))
    recipe = default_recipe(2, bands=8).with_overrides(checkpoint=shared_reference / "coarsr" / "coarsr_x2_f16_b8.pth")
    with pytest.raises(ExportError, match=r"verification failed: torch-cpu-fp32: max"):
        export_variant(recipe, out_dir=tmp_path, verify=True)
    assert list(tmp_path.rglob("*.onnx*")) == []


def test_scale_mismatch_is_refused(shared_reference: Path, tmp_path: Path) -> None:
    recipe = default_recipe(4, bands=8).with_overrides(checkpoint=shared_reference / "coarsr" / "coarsr_x2_f16_b8.pth")
    with pytest.raises(ScaleMismatchError, match="×2 model"):
        export_variant(recipe, out_dir=tmp_path)
    assert not any(tmp_path.rglob("*.onnx"))


def test_without_checkpoint_says_what_to_pass(tmp_path: Path) -> None:
    # No ×8 weights ship; the error names the option and the shipped scales.
    with pytest.raises(CheckpointError, match=r"shipped: cave: ×2, ×4.*--weights PATH"):
        export_variant(default_recipe(8), out_dir=tmp_path)


def test_cli_export_defaults_to_the_shipped_weights(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", "--scale", "4", "--precision", "fp32", "--out", str(tmp_path), "--verify"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.glob("coarsr-x4-c31-*")  # keyed by the weights' SHA-256 too
    (manifest_file,) = folder.glob("*.json")
    assert folder.name == f"coarsr-x4-c31-{json.loads(manifest_file.read_text())['checkpoint_sha256'][:12]}"
    manifest = json.loads(manifest_file.read_text())
    assert Path(manifest["checkpoint"]).name == "coarsr_x4.safetensors"
    assert "pass" in result.output


def test_cli_export(shared_reference: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "export",
            "--scale",
            "4",
            "--bands",
            "8",
            "--precision",
            "fp32",
            "--checkpoint",
            str(shared_reference / "coarsr" / "coarsr_x4_f16_b8.pth"),
            "--out",
            str(tmp_path),
            "--verify",
        ],
    )
    assert result.exit_code == 0, result.output
    (graph,) = tmp_path.glob("coarsr-x4-c8-*/coarsr_x4_c8_fp32.onnx")
    assert graph.is_file()
    assert "pass" in result.output


def test_cli_export_unsupported_scale(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "--scale", "5", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "scale 5 is not supported" in result.output


def test_cli_backends_lists_and_explains() -> None:
    result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0
    assert "torch-cpu" in result.output
    assert "dualsr-deploy[gpu]" in result.output or "CUDA" in result.output


def test_simplified_graphs_are_smaller_still_verify_and_stay_tensorrt_parsable(
    shared_reference: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnxslim")
    import onnx

    recipe = default_recipe(4, bands=31).with_overrides(precisions=("fp32",))
    plain = export_variant(recipe, out_dir=tmp_path / "plain", tensorrt="off")
    slim = export_variant(
        recipe,
        out_dir=tmp_path / "slim",
        tensorrt="off",
        simplify=True,
        verify=True,
        operator_table=shared_reference / "onnx_tensorrt_operators.md",
    )
    nodes = [len(onnx.load(str(r.artefacts[0].path)).graph.node) for r in (plain, slim)]
    assert nodes[1] < nodes[0]
    assert json.loads(slim.artefacts[0].manifest.read_text())["simplified"] == "onnxslim"
    assert all(c.passed for c in slim.verification)
