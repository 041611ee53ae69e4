"""``--backend auto`` (issue #45): the backend installed here whose precision ran the weights' held-out scenes
fastest, from the records beside the weights; torch where nothing was timed. Said in the terminal and the manifest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dualsr_deploy.backends import choice as choice_module
from dualsr_deploy.backends.choice import choose_backend
from dualsr_deploy.backends.fidelity import FidelityFile, FidelityRecord, SceneDelta, file_sha256, record_path
from dualsr_deploy.checkpoint import write_checkpoint
from dualsr_deploy.cli.main import app
from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.infer.options import BackendSpec, InferOptions
from dualsr_deploy.runtimes import CPU_BF16_ENV
from tests.helpers import random_coarsr
from tests.infer.conftest import lr_scene


def _record(backend: str, seconds_fp32: float, seconds: float, *, d_psnr: float = -0.001) -> FidelityRecord:
    scenes = (SceneDelta("a", "coarse", 40.0, 2.0, 40.0 + d_psnr, 2.001),)
    return FidelityRecord(
        backend, "bf16", "cpu-bf16", "test CPU", "coarse", 2, None, None, seconds_fp32, seconds, "", {}, scenes
    )


def _fp32_record(backend: str, seconds: float, *, kind: str = "cpu", d_psnr: float = 0.0) -> FidelityRecord:
    """``dualsr card --precision fp32``'s record: the backend's fp32 against torch's, and its time."""
    scenes = (SceneDelta("a", "coarse", 40.0, 2.0, 40.0 + d_psnr, 2.0),)
    return FidelityRecord(backend, "fp32", kind, "test CPU", "coarse", 2, None, None, seconds, seconds, "", {}, scenes)


def _weights(folder: Path, *records: FidelityRecord, name: str = "w_x2.safetensors") -> Path:
    path = write_checkpoint(random_coarsr(2, n_feats=4), folder / name, neighbour_rule="paper")
    FidelityFile(path.name, file_sha256(path), list(records)).write(record_path(path))
    return path


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU with native bf16 and torch, ONNX Runtime and OpenVINO installed, whatever this machine has."""
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    monkeypatch.setattr(choice_module, "unavailable", lambda backend, device: None if backend != "trt" else "no GPU")


@pytest.mark.usefixtures("installed")
def test_the_fastest_timed_backend_in_the_precision_it_runs(tmp_path: Path) -> None:
    weights = _weights(tmp_path, _record("torch", 6.0, 5.0), _record("openvino", 8.0, 3.0))
    chosen = choose_backend("cpu", "auto", [weights])
    assert chosen.backend == "openvino"
    assert "openvino bf16 3.00 s, torch bf16 5.00 s; not timed here: onnx, trt" in chosen.reason
    # asked for fp32, the fp32 times count: torch's is the faster
    assert choose_backend("cpu", "fp32", [weights]).backend == "torch"
    # a precision only some backends run: those that do not are not compared
    assert "runs no bf16-mixed" not in choose_backend("cpu", "bf16-mixed", [weights]).reason
    assert choose_backend("cpu", "bf16-mixed", [weights]).backend == "torch"


@pytest.mark.usefixtures("installed")
def test_another_backend_must_be_clearly_faster_than_torch(tmp_path: Path) -> None:
    weights = _weights(tmp_path, _record("torch", 6.0, 5.0), _record("openvino", 8.0, 4.5))
    chosen = choose_backend("cpu", "auto", [weights])
    assert chosen.backend == "torch"
    assert "no backend was 1.2× faster than torch" in chosen.reason
    assert "openvino bf16 4.50 s, torch bf16 5.00 s" in chosen.reason


@pytest.mark.usefixtures("installed")
def test_a_precision_torch_does_not_run_goes_to_the_first_backend_that_does(tmp_path: Path) -> None:
    weights = _weights(tmp_path, _record("torch", 6.0, 5.0))
    chosen = choose_backend("cpu", "int8", [weights])
    assert chosen.backend == "onnx"
    assert "onnx is the first installed backend that runs int8" in chosen.reason


@pytest.mark.usefixtures("installed")
def test_a_precision_that_failed_the_rule_is_not_its_time(tmp_path: Path) -> None:
    weights = _weights(tmp_path, _record("torch", 6.0, 5.0), _record("openvino", 8.0, 3.0, d_psnr=-0.5))
    chosen = choose_backend("cpu", "auto", [weights])
    assert chosen.backend == "torch"
    assert "torch bf16 5.00 s, openvino fp32 8.00 s" in chosen.reason


@pytest.mark.usefixtures("installed")
def test_every_weights_file_counts_once_and_one_missing_leaves_a_backend_out(tmp_path: Path) -> None:
    first = _weights(tmp_path, _record("torch", 6.0, 5.0), _record("openvino", 8.0, 3.0))
    second = _weights(tmp_path, _record("torch", 6.0, 1.0), _record("openvino", 8.0, 4.0), name="v_x2.safetensors")
    assert choose_backend("cpu", "auto", [first, second]).backend == "torch"  # 1.67× and 0.25×: 0.65×
    # large held-out scenes (50 s) do not outvote small ones: 1.11× and 2×, 1.49× over both (summed: 1.12×)
    big = _weights(tmp_path, _record("torch", 60.0, 50.0), _record("openvino", 80.0, 45.0), name="t_x2.safetensors")
    small = _weights(tmp_path, _record("torch", 2.0, 1.0), _record("openvino", 2.0, 0.5), name="s_x2.safetensors")
    chosen = choose_backend("cpu", "auto", [big, small])
    assert chosen.backend == "openvino"
    assert "openvino bf16 45.50 s, torch bf16 51.00 s (openvino 1.49× torch's speed, geometric mean over 2" in (
        chosen.reason
    )
    assert choose_backend("cpu", "auto", [big]).backend == "torch"  # 1.11× alone
    third = _weights(tmp_path, _record("torch", 6.0, 5.0), name="u_x2.safetensors")
    chosen = choose_backend("cpu", "auto", [first, third])
    assert (chosen.backend, chosen.reason.endswith("not timed here: onnx, trt, openvino")) == ("torch", True)


@pytest.mark.usefixtures("installed")
def test_nothing_timed_for_this_kind_of_device_is_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _weights(tmp_path, _record("openvino", 8.0, 3.0))
    monkeypatch.setenv(CPU_BF16_ENV, "0")  # the records are for CPUs with native bf16
    chosen = choose_backend("cpu", "auto", [weights])
    assert chosen.backend == "torch"
    assert "no backend was timed" in chosen.reason
    assert "a cpu device" in chosen.reason


@pytest.mark.usefixtures("installed")
def test_on_a_cpu_without_native_bf16_the_fp32_records_choose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``auto`` runs fp32 (no native bf16), the fp32 records of that kind of CPU time the backends; one whose
    fp32 differed from torch's beyond the quality rule is left out, and says so."""
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    weights = _weights(
        tmp_path, _record("openvino", 8.0, 3.0), _fp32_record("torch", 6.0), _fp32_record("openvino", 4.0)
    )
    chosen = choose_backend("cpu", "auto", [weights])
    assert chosen.backend == "openvino"
    assert "on a cpu device: openvino fp32 4.00 s, torch fp32 6.00 s" in chosen.reason
    # on a CPU with native bf16 the same file's cpu-bf16 records decide, the cpu ones do not count
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert "openvino bf16 3.00 s; not timed here: torch" in choose_backend("cpu", "auto", [weights]).reason
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert (
        choose_backend(
            "cpu",
            "auto",
            [_weights(tmp_path, _fp32_record("torch", 6.0), _fp32_record("openvino", 5.5), name="v_x2.safetensors")],
        ).backend
        == "torch"
    )  # 1.09×: under the margin
    wrong = _weights(
        tmp_path, _fp32_record("torch", 6.0), _fp32_record("openvino", 1.0, d_psnr=-0.3), name="u_x2.safetensors"
    )
    chosen = choose_backend("cpu", "auto", [wrong])
    assert chosen.backend == "torch"
    assert "openvino (its fp32 differs from torch's beyond the quality rule for u_x2.safetensors)" in chosen.reason


def test_only_records_timed_the_same_way_are_compared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records timed on the scenes as they are (before timed_side) measure per-call overhead on small scenes: beside
    records timed on tile-sized windows they are left out, and say why; alone, they still decide."""
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    weights = _weights(
        tmp_path,
        replace(_fp32_record("torch", 6.0), timed_side=176),
        replace(_fp32_record("onnx", 4.0), timed_side=176),
        _fp32_record("openvino", 1.0),  # faster, but timed on the scenes as they are
    )
    chosen = choose_backend("cpu", "auto", [weights])
    assert chosen.backend == "onnx"
    assert "fastest on the weights' held-out scenes repeated to 176 × 176 LR windows on a cpu device" in chosen.reason
    assert (
        "openvino (timed on the weights' held-out scenes as they are for w_x2.safetensors, the others on the weights' "
        "held-out scenes repeated to 176 × 176 LR windows: measure it again with dualsr card … --backend openvino)"
    ) in chosen.reason
    old = _weights(
        tmp_path, _fp32_record("torch", 6.0), _fp32_record("openvino", 1.0), name="v_x2.safetensors"
    )  # the cpu-bf16 records shipped before timed_side: compared among themselves
    chosen = choose_backend("cpu", "auto", [old])
    assert chosen.backend == "openvino"
    assert "fastest on the weights' held-out scenes as they are" in chosen.reason
    # another kind's records do not move this kind's way of timing
    mixed = _weights(
        tmp_path,
        replace(_fp32_record("torch", 6.0, kind="cpu-bf16"), timed_side=176),
        _fp32_record("torch", 6.0),
        _fp32_record("openvino", 1.0),
        name="u_x2.safetensors",
    )
    assert choose_backend("cpu", "auto", [mixed]).backend == "openvino"


def test_a_timed_backend_that_cannot_run_here_is_not_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    weights = _weights(tmp_path, _record("torch", 6.0, 5.0), _record("trt", 1.0, 1.0))
    chosen = choose_backend("cpu", "auto", [weights])
    assert chosen.backend == "torch"
    assert "trt (needs a CUDA GPU)" in chosen.reason


@pytest.mark.usefixtures("installed")
def test_the_python_api_chooses_as_the_command_line(tmp_path: Path) -> None:
    weights = _weights(tmp_path, _record("torch", 6.0, 5.0), _record("openvino", 8.0, 3.0))
    cli = BackendSpec.for_run("auto", scale=2, stage="coarse", device="cpu", precision="auto", weights=weights)
    api = InferOptions(scale=2, stage="coarse", backend=BackendSpec(backend="auto", weights=((2, weights),))).backend
    assert (cli.backend, cli.precision) == (api.backend, api.precision) == ("openvino", "bf16")
    assert cli.backend_choice == api.backend_choice
    assert replace(cli, artefacts_dir=api.artefacts_dir) == api


@pytest.mark.usefixtures("installed")
def test_on_a_cluster_the_python_api_runs_torch_as_the_command_line_does(tmp_path: Path) -> None:
    """``dualsr infer --cluster`` takes torch (the workers may lack this machine's runtimes); ``run_archive`` with a
    cluster turns an auto-chosen backend into torch the same way, precision chosen again for torch."""
    weights = _weights(tmp_path, _record("torch", 6.0, 5.0), _record("openvino", 8.0, 3.0))
    api = InferOptions(scale=2, stage="coarse", backend=BackendSpec(backend="auto", weights=((2, weights),)))
    assert api.backend.backend == "openvino"
    cluster = api.for_cluster().backend
    cli = BackendSpec.for_run(
        "auto", scale=2, stage="coarse", device="cpu", precision="auto", weights=weights, on_cluster=True
    )
    assert (cluster.backend, cluster.precision) == (cli.backend, cli.precision) == ("torch", "bf16")
    assert cluster.backend_choice == cli.backend_choice
    asked = InferOptions(scale=2, stage="coarse", backend=BackendSpec(backend="openvino", weights=((2, weights),)))
    assert asked.for_cluster() == asked  # asked for by name: kept


def test_each_family_runs_on_the_backend_fastest_for_its_own_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``--weights auto`` a run's scenes take the family their bands call for, and each family's route chooses
    its backend from its own weights' records: an archive of airborne scenes is not held to what is fastest for
    CAVE's (on a 2-core AMD EPYC, ONNX Runtime 1.24× torch's speed on airborne ×2 and 1.01× on cave ×2). On a cluster
    the workers run torch for every family. End to end: each scene's record and the line said for the family."""
    pytest.importorskip("onnxruntime")
    from dualsr_deploy.backends.choice import BackendChoice
    from dualsr_deploy.weights import FamilyChoice

    monkeypatch.setenv(CPU_BF16_ENV, "0")
    asked: list[tuple[str, list[str]]] = []

    def timed(device: str, precision: str, weights: list[Path]) -> BackendChoice:
        family = "airborne" if any(p.parent.name == "airborne" for p in weights) else "cave"
        asked.append((precision, [p.parent.name for p in weights]))
        return BackendChoice("onnx" if family == "airborne" else "torch", f"fastest for {family}'s weights")

    monkeypatch.setattr(choice_module, "choose_backend", timed)
    options = InferOptions(scale=2, stage="coarse", backend=BackendSpec(backend="auto"))
    assert options.backend.backend == "torch"  # the base route runs cave's weights, auto's fallback
    assert asked == [("auto", ["weights"])]  # cave's files alone, not both families'
    airborne = options.for_weights(FamilyChoice("airborne", "100 bands"))
    assert airborne is not None
    assert (airborne.backend.backend, airborne.backend.precision) == ("onnx", "fp32")
    assert airborne.backend.backend_choice == "--backend auto → onnx (fastest for airborne's weights)"
    on_cluster = options.for_cluster().for_weights(FamilyChoice("airborne", "100 bands"))
    assert on_cluster is not None
    assert on_cluster.backend.backend == "torch"
    named = InferOptions(scale=2, stage="coarse", backend=BackendSpec(backend="torch"))
    routed = named.for_weights(FamilyChoice("airborne", "100 bands"))
    assert routed is not None
    assert routed.backend.backend == "torch"  # a backend asked for by name is every family's

    write_scene(tmp_path / "in" / "lab.h5", lr_scene(0, 12, 31))
    air = lr_scene(1, 12, 100)
    spectrometer = replace(air.meta, wavelengths=tuple(400.0 + 21.0 * i for i in range(100)))  # 400–2479 nm
    write_scene(tmp_path / "in" / "air.h5", replace(air, meta=spectrometer))
    out = tmp_path / "out"
    command = ["infer", str(tmp_path / "in"), "-o", str(out), "--scale", "2", "--stage", "coarse"]
    result = CliRunner().invoke(app, [*command, "--engines", str(tmp_path / "engines")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "--backend auto → torch (fastest for cave's weights)" in said
    assert "airborne weights: --backend auto → onnx (fastest for airborne's weights)" in said
    records = {r["name"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    assert records["lab"]["backend"] == "torch-cpu-fp32"
    assert records["air"]["backend"] == "onnx-cpu-fp32"
    assert records["air"]["backend_choice"] == "--backend auto → onnx (fastest for airborne's weights)"
    assert records["air"]["weights"] == "airborne"


def test_infer_says_and_records_the_backend_auto_chose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: the default `dualsr infer` (no --backend) runs OpenVINO where the weights' records time it
    fastest, and torch where nothing was timed; the line is printed and kept in every scene's record."""
    pytest.importorskip("openvino")
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    weights = _weights(tmp_path, _record("torch", 6.0, 5.0), _record("openvino", 8.0, 3.0))
    write_scene(tmp_path / "in" / "a.h5", lr_scene(0, 16, 31))
    command = ["infer", str(tmp_path / "in"), "--scale", "2", "--stage", "coarse", "--weights", str(weights)]
    result = CliRunner().invoke(app, [*command, "-o", str(tmp_path / "out"), "--engines", str(tmp_path / "engines")])
    assert result.exit_code == 0, result.output
    assert "--backend auto → openvino (fastest on the weights' held-out scenes" in result.output.replace("\n", " ")
    (record,) = map(json.loads, (tmp_path / "out" / "manifest.jsonl").read_text().splitlines())
    assert record["backend"] == "openvino-cpu-bf16"
    assert record["backend_choice"].startswith("--backend auto → openvino")
    xr = pytest.importorskip("xarray")
    from dualsr_deploy.xarray import super_resolve

    monkeypatch.chdir(tmp_path)  # the Python API's artefacts folder is ./engines
    da = xr.DataArray(lr_scene(0, 16, 31).cube, dims=("band", "y", "x"), name="a")
    attrs = super_resolve(da, scale=2, stage="coarse", weights=str(weights)).attrs
    assert attrs["dualsr_backend"] == "openvino-cpu-bf16"
    assert attrs["dualsr_backend_choice"] == record["backend_choice"]
    record_path(weights).unlink()
    result = CliRunner().invoke(app, [*command, "-o", str(tmp_path / "out2")])
    assert result.exit_code == 0, result.output
    (record,) = map(json.loads, (tmp_path / "out2" / "manifest.jsonl").read_text().splitlines())
    assert record["backend"] == "torch-cpu-fp32"
    assert "no backend was timed" in record["backend_choice"]
