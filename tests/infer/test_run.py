"""``dualsr infer`` end to end: a mixed archive, resume, engines, streaming, refusals, interruption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dualsr_deploy import backproject, load_coarsr
from dualsr_deploy.cli.main import app
from dualsr_deploy.data import read_scene
from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.infer import BackendSpec, Event, InferOptions, run_archive
from dualsr_deploy.infer.lock import LOCK_NAME
from dualsr_deploy.weights import shipped_weights
from tests.infer.conftest import infer_process, interrupt_after_first_scene, lr_scene, wait_for_ok

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def manifest(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def dual_reference(lr: np.ndarray) -> torch.Tensor:
    """The paper's dual stage computed directly, whole image: CoarSR ×4 and ×2, clipped, back-projected."""
    x = torch.from_numpy(lr)[None]
    with torch.inference_mode():
        high = load_coarsr(shipped_weights(4))(x)[0].clamp(0, 1)
        low = load_coarsr(shipped_weights(2))(x)[0].clamp(0, 1)
    return backproject(high, low, factor=2).clamp(0, 1)


def test_mixed_archive_end_to_end_then_resume(mixed_archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["infer", str(mixed_archive), "-o", str(out), "--tile", "16"], terminal_width=200)
    assert result.exit_code == 1, result.output  # one scene failed
    records = {r["name"]: r for r in manifest(out)}
    assert {n for n, r in records.items() if r["status"] == "ok"} == {"a", "b", "sub/c", "d", "e"}
    assert records["broken"]["status"] == "failed"
    assert "broken.h5" in str(records["broken"]["error"])
    expected = {"a.h5": 31, "b.npy": 31, "sub/c.mat": 5, "d.tif": 48, "e.hdr": 31}
    for name, bands in expected.items():
        source = mixed_archive / name
        lr = read_scene(source).cube
        sr = read_scene(out / name)
        assert sr.cube.shape == (bands, 4 * lr.shape[1], 4 * lr.shape[2])
        assert sr.meta.attrs["stage"] == "dual"
        # fp32 (cave ×4 is fp32 under the quality rule); the backend is --backend auto's, which depends on the CPU
        assert sr.meta.attrs["backend"].endswith("-cpu-fp32")
        # tiles of 16 LR px, scenes batched together: still the whole-image dual stage
        assert np.abs(sr.cube - dual_reference(lr).numpy()).max() <= 1e-5
    assert "broken" in result.output
    assert "5 done, 1 failed" in result.output

    stamps = {
        p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in ("manifest.jsonl", LOCK_NAME)
    }
    again = runner.invoke(app, ["infer", str(mixed_archive), "-o", str(out), "--tile", "16", "--resume"])
    assert again.exit_code == 1  # the broken file is tried again, and fails again
    assert "0 done, 1 failed, 5 skipped" in again.output
    assert len(manifest(out)) == 7  # one new line: the broken scene; nothing recomputed
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}

    refused = runner.invoke(app, ["infer", str(mixed_archive), "-o", str(out)])
    assert refused.exit_code == 2
    assert "--resume to continue it" in refused.output


def test_resume_redoes_a_scene_whose_input_changed(tmp_path: Path) -> None:
    archive = tmp_path / "lr"
    write_scene(archive / "a.h5", lr_scene(0, 16, 31))
    write_scene(archive / "b.h5", lr_scene(1, 16, 31))
    options = InferOptions(stage="coarse", tile=16)
    assert run_archive(archive, tmp_path / "out", options).exit_code == 0
    write_scene(archive / "b.h5", lr_scene(7, 16, 31))
    report = run_archive(archive, tmp_path / "out", InferOptions(stage="coarse", tile=16, resume=True))
    assert [r.name for r in report.records] == ["b"]
    assert [p.entry.name for p in report.skipped] == ["a"]


def test_onnx_engine_exports_per_band_count_and_matches_torch(mixed_archive: Path, tmp_path: Path) -> None:
    events: list[str] = []
    common = {"tile": 16, "root": mixed_archive}
    torch_run = run_archive(mixed_archive / "sub", tmp_path / "torch", InferOptions(**common))  # type: ignore[arg-type]
    spec = BackendSpec(backend="onnx", artefacts_dir=tmp_path / "engines")
    onnx_run = run_archive(
        mixed_archive / "sub",
        tmp_path / "onnx",
        InferOptions(backend=spec, **common),  # type: ignore[arg-type]
        progress=lambda e: events.append(e.text) if e.kind == "message" else None,
    )
    assert torch_run.exit_code == onnx_run.exit_code == 0
    assert any("exporting" in text for text in events)
    # on a CPU ONNX Runtime runs band-chunk graphs (up to 8 bands a call: these 5-band scenes' take 5, no padding)
    assert len(list((tmp_path / "engines").glob("coarsr-x4-c5-*/coarsr_x4_c5_fp32_chunk5.onnx"))) == 1
    assert len(list((tmp_path / "engines").glob("coarsr-x2-c5-*/coarsr_x2_c5_fp32_chunk5.onnx"))) == 1
    a = read_scene(tmp_path / "torch" / "c.mat").cube
    b = read_scene(tmp_path / "onnx" / "c.mat").cube
    assert np.abs(a - b).max() <= 1e-5
    assert read_scene(tmp_path / "onnx" / "c.mat").meta.attrs["backend"] == "onnx-cpu-fp32"


@pytest.mark.parametrize("stage", ["coarse", "dual", "backproject"])
def test_scenes_over_the_memory_budget_stream_to_the_same_result(stage: str, tmp_path: Path) -> None:
    archive = tmp_path / "lr"
    write_scene(archive / "big.npy", lr_scene(5, 40, 31))
    whole = run_archive(archive, tmp_path / "memory", InferOptions(stage=stage, tile=16))
    budget = 200_000  # the scene needs ~30 MB whole: it must stream
    events: list[Event] = []
    streamed = run_archive(
        archive, tmp_path / "streamed", InferOptions(stage=stage, tile=16, memory_budget=budget), progress=events.append
    )
    assert [r.mode for r in whole.records] == ["memory"]
    assert [r.mode for r in streamed.records] == ["streamed"]
    a = read_scene(tmp_path / "memory" / "big.npy").cube
    b = read_scene(tmp_path / "streamed" / "big.npy").cube
    np.testing.assert_array_equal(a, b)  # bit-identical: the same tiles, the same batch size, the same fine stage
    assert streamed.records[0].sam_weight == whole.records[0].sam_weight
    strips = [(e.name, e.count, e.total) for e in events if e.kind == "strips"]  # the fine stage's progress
    if stage == "coarse":
        assert not strips
    else:
        steps: dict[str, list[tuple[int, int]]] = {name: [] for name, _, _ in strips}
        for name, count, total in strips:
            steps[name].append((count, total))
        assert sorted(steps) == ["big: SAM weight", "big: back-projection"]
        for done in steps.values():
            assert [c for c, _ in done] == sorted(c for c, _ in done)  # rows only ever go forward
            assert done[-1][0] == done[-1][1]  # and reach the end
        assert steps["big: back-projection"][-1][1] == 160  # the ×4 output's rows
    assert not (tmp_path / "streamed" / ".dualsr-work").exists()


def test_dry_run_lists_and_writes_nothing(mixed_archive: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["infer", str(mixed_archive), "-o", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "run" in result.output
    assert "broken" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scale", "3", "--stage", "dual"], "needs a ×1.5 CoarSR"),
        (["--scale", "2", "--stage", "dual"], "×2 has none (s/2 = 1)"),
        (["--scale", "8"], "no shipped cave ×8 weights (shipped cave: ×2, ×4); pass your own (--weights PATH"),
        (["--stage", "fine"], "unknown stage"),
        (["--engine", "tensorrt"], "unknown backend"),
        (["--format", "png"], "unknown --format"),
        (["--memory-budget", "lots"], "cannot read 'lots' as a size"),
        (["--resume", "--overwrite"], "give one of them"),
    ],
)
def test_bad_options_are_one_line_errors(mixed_archive: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["infer", str(mixed_archive), "-o", str(tmp_path / "o"), *args], terminal_width=300)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_outputs_never_overwrite_or_join_the_inputs(mixed_archive: Path) -> None:
    result = runner.invoke(app, ["infer", str(mixed_archive), "-o", str(mixed_archive)], terminal_width=300)
    assert result.exit_code == 2
    assert "archive's own folder" in result.output
    inside = runner.invoke(app, ["infer", str(mixed_archive), "-o", str(mixed_archive / "sr")], terminal_width=300)
    assert inside.exit_code == 2
    assert "would be read as scenes" in inside.output
    assert not (mixed_archive / "sr").exists()


@pytest.mark.slow
def test_a_killed_run_resumes_to_identical_outputs(archive_of_eight: tuple[Path, Path], tmp_path: Path) -> None:
    archive, reference = archive_of_eight
    out = tmp_path / "out"
    process = infer_process(archive, out)
    wait_for_ok(out, process, 2)
    process.kill()  # SIGKILL: no handler runs, whatever was half-written stays half-written
    process.wait()
    done_before = sum(r["status"] == "ok" for r in manifest(out))
    assert done_before < 8, "the run finished before it could be killed"
    resumed = infer_process(archive, out, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.communicate()[0].decode()[-2000:]
    records = manifest(out)
    assert sorted(str(r["name"]) for r in records if r["status"] == "ok") == [f"s{i}" for i in range(8)]
    for seed in range(8):
        assert np.array_equal(read_scene(out / f"s{seed}.h5").cube, read_scene(reference / f"s{seed}.h5").cube)
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.slow
def test_ctrl_c_keeps_finished_scenes_and_exits_130(archive_of_eight: tuple[Path, Path], tmp_path: Path) -> None:
    archive, reference = archive_of_eight
    out = tmp_path / "out"
    finished = interrupt_after_first_scene(archive, out)
    for name in finished:
        assert np.array_equal(read_scene(out / f"{name}.h5").cube, read_scene(reference / f"{name}.h5").cube)
