"""What a hostile archive or a hostile machine does to a run: symbolic-link loops and escapes, a full disk, a second
run on the same folder, a tampered graph, a truncated output, SIGKILL + ``--resume``. Each ends in a named record or
a clear refusal, never a crash, and what is written is what an undisturbed run writes, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data import write_scene
from dualsr_deploy.data.archive import open_archive
from dualsr_deploy.data.formats import open_scene
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.infer.lock import LOCK_NAME, output_lock

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def make_scenes(folder: Path, count: int, side: int = 24, bands: int = 31) -> list[str]:
    generator = np.random.default_rng(7)
    names = []
    for index in range(count):
        base = generator.random((bands, side // 4, side // 4))
        cube = (0.1 + 0.8 * np.kron(base, np.ones((4, 4)))).astype(np.float32)
        names.append(f"scene{index}")
        write_scene(folder / f"scene{index}.h5", Scene(names[-1], cube, SceneMeta("made", "hdf5")))
    return names


def infer(archive: Path, out: Path, *extra: str) -> tuple[int, str]:
    args = ["infer", str(archive), "-o", str(out), "--scale", "2", "--stage", "coarse", "--tile", "16", *extra]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    return result.exit_code, " ".join(result.output.split())


def outputs(folder: Path) -> dict[str, np.ndarray]:
    found = {}
    for path in sorted(folder.glob("*.h5")):
        with open_scene(path) as reader:
            found[path.stem] = reader.read_raw()
    return found


def records(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]


def test_symbolic_link_loops_and_escapes_are_skipped_with_reasons(tmp_path: Path) -> None:
    archive, outside = tmp_path / "archive", tmp_path / "outside"
    (archive / "sub").mkdir(parents=True)
    outside.mkdir()
    make_scenes(archive, 1)
    make_scenes(archive / "sub", 1)
    make_scenes(outside, 1)
    (archive / "a.h5").symlink_to("b.h5")  # a file loop
    (archive / "b.h5").symlink_to("a.h5")
    (archive / "self").symlink_to(".")  # a folder linked to itself
    (archive / "sub" / "up").symlink_to("..")  # to an ancestor inside the archive
    (archive / "parent").symlink_to("..")  # out of the archive
    (archive / "abs").symlink_to(outside)  # an absolute link out
    (archive / "alias.h5").symlink_to(archive / "scene0.h5")  # a second name for one file
    started = time.perf_counter()
    opened = open_archive(archive)
    assert time.perf_counter() - started < 10
    assert sorted(entry.name for entry in opened.entries) == ["scene0", "sub/scene0"]
    reasons = {skipped.path.name: skipped.reason for skipped in opened.skipped}
    assert "loop" in reasons["a.h5"]
    assert "loop" in reasons["b.h5"]
    assert "already walked" in reasons["self"]
    assert "already walked" in reasons["up"]
    assert "out of the archive root" in reasons["parent"]
    assert "out of the archive root" in reasons["abs"]
    assert "the same file as" in reasons["alias.h5"]
    code, said = infer(archive, tmp_path / "sr")
    assert code == 0, said
    assert sorted(p.name for p in (tmp_path / "sr").rglob("*.h5")) == ["scene0.h5", "scene0.h5"]
    wide = open_archive(archive, root=tmp_path)  # --root widens what links may reach
    assert "abs/scene0" in {entry.name for entry in wide.entries}


def test_a_second_run_on_a_locked_folder_is_refused_and_a_stale_lock_taken_over(tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "sr"
    archive.mkdir()
    make_scenes(archive, 1)
    with output_lock(out):
        code, said = infer(archive, out)
    assert code == 2
    assert f"another dualsr run is writing to this folder (pid {os.getpid()}" in said
    (out / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "gone", "started": "yesterday"}))  # a dead run
    code, said = infer(archive, out)
    assert code == 0, said
    assert "took over the lock of a run that ended without releasing it (pid 999999 on gone" in said


def test_resume_redoes_a_truncated_or_missing_output_and_says_why(tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "sr"
    archive.mkdir()
    make_scenes(archive, 3)
    assert infer(archive, out)[0] == 0
    first = outputs(out)
    assert all(record["output_bytes"] and record["output_sha256"] for record in records(out))
    data = (out / "scene1.h5").read_bytes()
    (out / "scene1.h5").write_bytes(data[: len(data) // 2])
    (out / "scene2.h5").unlink()
    code, said = infer(archive, out, "--resume")
    assert code == 0, said
    redone = {str(r["name"]): r for r in records(out)[3:]}
    assert set(redone) == {"scene1", "scene2"}
    assert "cut short" in " ".join(redone["scene1"]["notes"])  # type: ignore[arg-type]
    assert "its output is missing (scene2.h5)" in " ".join(redone["scene2"]["notes"])  # type: ignore[arg-type]
    again = outputs(out)
    for name in first:
        np.testing.assert_array_equal(again[name], first[name])


def test_a_tampered_graph_is_refused_with_both_hashes(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    archive, engines = tmp_path / "archive", tmp_path / "engines"
    archive.mkdir()
    make_scenes(archive, 1)
    assert infer(archive, tmp_path / "first", "--backend", "onnx", "--engines", str(engines))[0] == 0
    (graph,) = engines.rglob("*.onnx")
    model = onnx.load(graph)
    weight = model.graph.initializer[3]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 3, weight.name))
    onnx.save(model, graph)
    code, said = infer(archive, tmp_path / "second", "--backend", "onnx", "--engines", str(engines))
    assert code == 1
    recorded = json.loads(graph.with_name(graph.name + ".json").read_text())["sha256"]
    assert recorded in said
    assert "changed or damaged" in said
    assert "re-export" in said
    assert not list((tmp_path / "second").glob("*.h5"))


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


def test_a_full_disk_fails_scenes_by_name_and_resume_completes_them(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "3m"):
        pytest.skip("needs root and tmpfs to make a small file system")
    try:
        archive = tmp_path / "archive"
        archive.mkdir()
        names = make_scenes(archive, 4, side=48)  # ~1.1 MiB an output: each fits alone, not all four
        code, said = infer(archive, tmp_path / "reference")
        assert code == 0
        code, said = infer(archive, disk / "sr")
        assert code == 1, said
        failed = [r for r in records(disk / "sr") if r["status"] == "failed"]
        assert any("no space left" in str(record["error"]) for record in failed)  # the writer met the full disk
        for record in failed:  # refused before the scene (too little left) or by the writer: free space named
            error = str(record["error"])
            assert ("no space left" in error and "MiB free" in error) or ("needs ~" in error and "free" in error)
        assert {str(r["name"]) for r in records(disk / "sr")} == set(names)  # every scene tried and named
        assert not [p for p in (disk / "sr").iterdir() if p.name.endswith(".tmp")]  # no partial file left
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        code, said = infer(archive, disk / "sr", "--resume")
        assert code == 0, said
        reference, resumed = outputs(tmp_path / "reference"), outputs(disk / "sr")
        assert set(resumed) == set(names)
        for name in names:
            np.testing.assert_array_equal(resumed[name], reference[name])
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_sigkill_and_resume_give_the_undisturbed_run_bit_for_bit(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    names = make_scenes(archive, 8, side=64)
    command = [sys.executable, "-m", "dualsr_deploy", "infer", str(archive), "--scale", "2", "--stage", "coarse"]
    subprocess.run([*command, "-o", str(tmp_path / "quiet")], check=True, capture_output=True, cwd=REPO)
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "-o", str(killed)], cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not ((killed / "manifest.jsonl").is_file() and len(records(killed)) >= 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    subprocess.run([*command, "-o", str(killed), "--resume"], check=True, capture_output=True, cwd=REPO)
    quiet, resumed = outputs(tmp_path / "quiet"), outputs(killed)
    assert set(resumed) == set(names)
    for name in names:
        np.testing.assert_array_equal(resumed[name], quiet[name])
