"""``--weights auto``: a shipped family per scene (airborne beyond 1000 nm, or above 64 bands without wavelengths),
cave where the family ships nothing, the choice in the manifest, the output's attributes and the eval report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import dualsr_deploy.weights as weights_module
from dualsr_deploy.checkpoint import read_checkpoint, write_checkpoint
from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.data.synth import synthesize
from dualsr_deploy.errors import CheckpointError
from dualsr_deploy.evaluation.core import EvalOptions, evaluate_archive
from dualsr_deploy.infer import BackendSpec, InferOptions, run_archive
from dualsr_deploy.weights import choose_family, shipped_weights
from tests.infer.conftest import lr_scene


@pytest.fixture
def airborne_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An airborne family of ×4 and ×2 weights that differ from cave's (cave's, perturbed), in a temporary folder."""
    folder = tmp_path / "weights"
    (folder / "airborne").mkdir(parents=True)
    for scale in (2, 4):
        shutil.copy(shipped_weights(scale, "cave"), folder / f"coarsr_x{scale}.safetensors")
        model, _info = read_checkpoint(shipped_weights(scale, "cave"))
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(1.05)
        write_checkpoint(model, folder / "airborne" / f"coarsr_x{scale}.safetensors", neighbour_rule="paper")
    monkeypatch.setattr(weights_module, "WEIGHTS_DIR", folder)
    return folder


@pytest.fixture
def cave_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shipped weights as if only the cave family existed."""
    for scale in (2, 4):
        shutil.copy(shipped_weights(scale, "cave"), tmp_path / f"coarsr_x{scale}.safetensors")
    monkeypatch.setattr(weights_module, "WEIGHTS_DIR", tmp_path)


@pytest.mark.usefixtures("cave_only")
def test_the_rule_wavelengths_first_then_band_count() -> None:
    visible = tuple(np.linspace(400, 700, 31))
    swir = tuple(np.linspace(380, 2500, 200))
    scales = (4, 2)
    # no airborne weights ship: every choice is cave, and says why
    choice = choose_family(200, swir, scales)
    assert choice.family == "cave"
    assert "wavelengths reach 2500 nm, beyond 1000" in choice.reason
    assert "no airborne weights ship at ×4, ×2: cave used" in choice.reason
    assert choose_family(31, visible, scales).reason == "wavelengths reach 700 nm, within 1000"
    assert choose_family(31, None, scales).reason == "31 bands (at most 64), no wavelengths"


def test_the_rule_with_an_airborne_family(airborne_family: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_family(200, tuple(np.linspace(380, 2500, 200)), (4, 2)).family == "airborne"
    assert choose_family(150, tuple(np.linspace(400, 900, 150)), (4, 2)).family == "cave"  # VNIR only: wavelengths win
    assert choose_family(65, None, (4, 2)).family == "airborne"
    micrometres = choose_family(200, tuple(np.linspace(0.38, 2.5, 200)), (4, 2))  # ENVI headers in micrometres
    assert (micrometres.family, micrometres.reason) == ("airborne", "wavelengths reach 2500 nm, beyond 1000")
    assert choose_family(31, tuple(np.linspace(0.4, 0.7, 31)), (4, 2)).family == "cave"
    assert choose_family(64, None, (4, 2)).family == "cave"
    assert choose_family(65, (float("nan"),) * 65, (4, 2)).family == "airborne"  # NaN wavelengths are unknown
    (airborne_family / "airborne" / "coarsr_x2.safetensors").unlink()
    partial = choose_family(189, None, (4, 2))
    assert (partial.family, partial.cave_scales) == ("airborne", (2,))
    assert BackendSpec.for_run(scale=4, stage="coarse", device="cpu", weights="airborne").weights_label(4) == "airborne"
    assert BackendSpec(family="auto").weights_label(4) == "cave"  # auto before a scene has chosen: the fallback
    custom = airborne_family / "mine.safetensors"
    shutil.copy(airborne_family / "coarsr_x4.safetensors", custom)
    assert BackendSpec.for_run(scale=4, stage="coarse", device="cpu", weights=custom).weights_label(4) == custom.name
    # every scale given a file: nothing is left for auto to choose
    half = airborne_family / "coarsr_x2.safetensors"
    both = BackendSpec.for_run(scale=4, stage="dual", device="cpu", weights=custom, weights_half=half)
    assert InferOptions(backend=both).choose_weights(189, None) is None
    only_x4 = BackendSpec.for_run(scale=4, stage="dual", device="cpu", weights=custom)
    assert InferOptions(backend=only_x4).choose_weights(189, None) is not None  # the ×2 guide is still auto's
    assert "no airborne weights ship at ×2: cave's used there" in partial.reason
    spec = BackendSpec(family="auto").with_family("airborne", partial.cave_scales)
    assert spec.checkpoint(4) == airborne_family / "airborne" / "coarsr_x4.safetensors"
    assert spec.checkpoint(2) == airborne_family / "coarsr_x2.safetensors"
    with pytest.raises(CheckpointError, match=r"no shipped airborne ×2 weights"):  # asked for by name: no fallback
        BackendSpec.for_run(scale=4, stage="dual", device="cpu", weights="airborne")


def test_infer_auto_runs_each_scene_with_its_family(airborne_family: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_scene(archive / "lab.h5", lr_scene(0, 16, 31))  # 31 bands over 400–700 nm
    wide = lr_scene(1, 16, 31)
    wide_cube = np.concatenate([wide.cube] * 3)  # 93 bands, wavelengths removed: more than 64 → airborne
    write_scene(archive / "airborne.h5", Scene("airborne", wide_cube, wide.meta.replace(wavelengths=None)))
    spec = BackendSpec.for_run(scale=4, stage="dual", device="cpu", precision="fp32")
    assert spec.family == "auto"
    report = run_archive(archive, tmp_path / "out", InferOptions(backend=spec, tile=16))
    assert report.exit_code == 0
    records = {r["name"]: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").read_text().splitlines())}
    assert records["lab"]["weights"] == "cave"
    assert records["lab"]["weights_choice"] == "auto: wavelengths reach 700 nm, within 1000"
    assert records["airborne"]["weights"] == "airborne"
    assert records["airborne"]["weights_choice"] == "auto: 93 bands (more than 64), no wavelengths"

    # the airborne scene really ran with the airborne files: its output is what --weights airborne gives, not cave's
    def output(name: str, weights: str, out: str) -> np.ndarray:
        fixed = BackendSpec.for_run(scale=4, stage="dual", device="cpu", precision="fp32", weights=weights)
        run_archive(archive, tmp_path / out, InferOptions(backend=fixed, tile=16))
        with h5py.File(tmp_path / out / f"{name}.h5") as handle:
            return np.asarray(handle["cube"])

    with h5py.File(tmp_path / "out" / "airborne.h5") as handle:
        auto_cube = np.asarray(handle["cube"])
        assert handle["cube"].attrs["weights"] == "airborne"
    np.testing.assert_array_equal(auto_cube, output("airborne", "airborne", "fixed_airborne"))
    assert np.abs(auto_cube - output("airborne", "cave", "fixed_cave")).max() > 1e-3


def test_eval_reports_the_choice(airborne_family: Path, tmp_path: Path) -> None:
    hr = synthesize(2, size=64, bands=31)
    wide = Scene("wide", np.concatenate([hr.cube] * 3), hr.meta.replace(wavelengths=None))
    write_scene(tmp_path / "hr" / "wide.h5", wide)
    spec = BackendSpec.for_run(scale=4, stage="dual", device="cpu", precision="fp32")
    report = evaluate_archive(tmp_path / "hr", EvalOptions(backends=(spec,), figures=False, tile=16))
    (scene,) = report.scenes
    assert scene.weights == "airborne (auto: 93 bands (more than 64), no wavelengths)"
    assert any(key.startswith("weights ×4 (airborne)") for key in report.versions)


def test_export_needs_one_family(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dualsr_deploy.cli.main import app

    result = CliRunner().invoke(app, ["export", "--scale", "4", "--weights", "auto", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "only infer, eval and demo do" in result.output


def test_precision_auto_is_chosen_per_family(
    airborne_family: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #45: the quality rule belongs to the weights, so under --weights auto each family's scenes run in the
    precision its own weights passed: here airborne ×4 has a passing bf16 record and cave ×4 none."""
    from dualsr_deploy.backends.fidelity import FidelityFile, FidelityRecord, SceneDelta, file_sha256, record_path

    monkeypatch.setenv("DUALSR_CPU_BF16", "1")
    airborne = airborne_family / "airborne" / "coarsr_x4.safetensors"
    scenes = (SceneDelta("s", "coarse", 40.0, 2.0, 39.999, 2.001),)
    passed = FidelityRecord("torch", "bf16", "cpu-bf16", "test", "coarse", 4, None, None, 2, 1, "", {}, scenes)
    FidelityFile(airborne.name, file_sha256(airborne), [passed]).write(record_path(airborne))
    archive = tmp_path / "archive"
    write_scene(archive / "lab.h5", lr_scene(0, 16, 31))
    wide = lr_scene(1, 16, 31)
    write_scene(
        archive / "airborne.h5", Scene("airborne", np.concatenate([wide.cube] * 3), wide.meta.replace(wavelengths=None))
    )
    spec = BackendSpec.for_run(scale=4, stage="coarse", device="cpu", precision="auto")
    assert spec.precision == "fp32"  # the run's own (cave) weights have no record
    report = run_archive(archive, tmp_path / "out", InferOptions(backend=spec, stage="coarse", tile=16))
    assert report.exit_code == 0
    records = {r["name"]: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").read_text().splitlines())}
    assert records["lab"]["backend"] == "torch-cpu-fp32"
    assert "no quality record beside coarsr_x4.safetensors" in records["lab"]["precision_choice"]
    assert records["airborne"]["backend"] == "torch-cpu-bf16", records["airborne"]["precision_choice"]
    assert records["airborne"]["precision_choice"].startswith("--precision auto → bf16 (passed the quality rule")
