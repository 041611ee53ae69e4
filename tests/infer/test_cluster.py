"""``dualsr infer --cluster``: a local Ray cluster of 2 CPU workers against the single-process run.

The Ray tests share one Ray instance started in this process (2 CPUs); a run finds it and uses it, as it would a
notebook's. One test starts its own through the CLI in a subprocess, as a user's ``--cluster local:2`` does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data import read_scene
from dualsr_deploy.data.archive import open_archive
from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.errors import ClusterError, InputError, WorkerRefusedError
from dualsr_deploy.infer import BackendSpec, Event, InferOptions, run_archive
from dualsr_deploy.infer.executors.ray_spec import ClusterSpec, layout_workers
from dualsr_deploy.infer.executors.ray_worker import SLOTS, SceneWorker
from dualsr_deploy.infer.plan import plan_archive
from tests.infer.conftest import infer_process, interrupt_after_first_scene, lr_scene

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
# 31-band scenes over this budget are streamed (strips, two-pass fine stage), 5-band ones stay in memory
BUDGET = 8 << 20


def manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def outputs(out: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(out).as_posix(): read_scene(p).cube for p in sorted(out.rglob("*.h5"))}


def assert_same_outputs(a: Path, b: Path) -> None:
    left, right = outputs(a), outputs(b)
    assert left.keys() == right.keys()
    for name in left:
        assert np.array_equal(left[name], right[name]), name  # bit for bit


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".dualsr-work" in p.parts]


# --- without Ray: the spec, the layout, a worker's per-node checks --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address", "workers"),
    [
        ("auto", "auto", None),
        ("ray://head.example:10001", "ray://head.example:10001", None),
        ("local", None, None),
        ("local:3", None, 3),
    ],
)
def test_cluster_spec_reads_the_three_forms(text: str, address: str | None, workers: int | None) -> None:
    spec = ClusterSpec.parse(text)
    assert (spec.address, spec.workers) == (address, workers)


@pytest.mark.parametrize("text", ["ray://head", "local:0", "local:x", "head:6379", "cluster"])
def test_cluster_spec_refuses_anything_else(text: str) -> None:
    with pytest.raises(InputError, match="--cluster"):
        ClusterSpec.parse(text)


def node(cpus: int, gpus: int = 0, memory: int = 64 << 30) -> dict[str, object]:
    resources = {"CPU": float(cpus), "memory": float(memory)} | ({"GPU": float(gpus)} if gpus else {})
    return {"Alive": True, "Resources": resources}


def test_layout_is_one_worker_per_gpu_or_per_worker_cores() -> None:
    gpu_nodes = [node(32, 4), node(16, 2)]
    layout = layout_workers(ClusterSpec.parse("auto"), gpu_nodes, "cuda")
    assert (layout.count, layout.gpus, layout.cpus, layout.device) == (6, 1, 8, "cuda")
    assert layout.memory_budget == (64 << 30) // 4 // 4  # a quarter of the busiest node's per-worker share

    cpu_nodes = [node(16), node(6)]
    layout = layout_workers(ClusterSpec.parse("ray://h:10001"), cpu_nodes, "cpu")
    assert (layout.count, layout.cpus, layout.gpus) == (4 + 1, 4, 0)
    layout = layout_workers(ClusterSpec.parse("auto", worker_cores=8), cpu_nodes, "cpu")
    assert layout.count == 2
    layout = layout_workers(ClusterSpec.parse("local:2"), [node(2)], "cpu")
    assert (layout.count, layout.cpus) == (2, 1)
    layout = layout_workers(ClusterSpec.parse("auto"), [node(2)], "cpu")  # smaller than the default 4 cores
    assert (layout.count, layout.cpus) == (1, 2)
    with pytest.raises(ClusterError, match="no node of the cluster has 32 CPU"):
        layout_workers(ClusterSpec.parse("auto", worker_cores=32), cpu_nodes, "cpu")
    with pytest.raises(ClusterError, match="no GPU"):
        layout_workers(ClusterSpec.parse("auto"), cpu_nodes, "cuda")


def test_a_worker_reads_and_writes_as_the_driver_does() -> None:
    """A worker's HDF5 chunk cache comes from the budget and its chunk compression uses its CPUs, as run_archive sets
    them in the driver."""
    from dualsr_deploy.data.formats import chunk_cache, chunk_writes

    before = (chunk_cache._size[0], chunk_writes._threads[0], torch.get_num_threads())
    try:
        SceneWorker(InferOptions(stage="coarse", memory_budget=2 << 30), None, 1)
        assert (chunk_cache._size[0], chunk_writes._threads[0], torch.get_num_threads()) == (128 << 20, 1, 1)
    finally:
        chunk_cache._size[0], chunk_writes._threads[0] = before[:2]
        torch.set_num_threads(before[2])


def test_a_worker_refuses_a_node_that_cannot_run_the_job(tmp_path: Path) -> None:
    from dualsr_deploy._version import __version__

    # torch named: what --backend auto picks depends on the CPU and the shipped records, not what this test is about
    options = InferOptions(stage="coarse", backend=BackendSpec(backend="torch", precision="fp32"))
    worker = SceneWorker(options, None, 1)
    sha = worker.pool.model(4).info.sha256
    assert worker.prepare(__version__, str(tmp_path), str(tmp_path), {4: sha}, [(4, 5)])["backends"] == [
        "torch-cpu-fp32"
    ]
    with pytest.raises(WorkerRefusedError, match=r"runs dualsr-deploy .*, the driver 0\.0\.1"):
        worker.prepare("0.0.1", str(tmp_path), str(tmp_path), {4: sha}, [])
    with pytest.raises(WorkerRefusedError, match=r"cannot write to .*mounts under the same path"):
        worker.prepare(__version__, str(tmp_path / "not-mounted-here"), str(tmp_path), {4: sha}, [])
    with pytest.raises(WorkerRefusedError, match="other ×4 weights"):
        worker.prepare(__version__, str(tmp_path), str(tmp_path), {4: "0" * 64}, [])
    with pytest.raises(WorkerRefusedError, match="does not see the archive"):
        worker.prepare(__version__, str(tmp_path), str(tmp_path / "elsewhere"), {4: sha}, [])


def test_each_node_builds_the_plan_for_its_own_gpu_and_never_loads_a_mismatched_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT is faked here (``tests/export/fake_tensorrt.py``, a recording stand-in, not TensorRT): what is
    checked is which plan a worker builds, loads or refuses."""
    from dualsr_deploy._version import __version__
    from tests.export.fake_tensorrt import make_fake_tensorrt

    def gpu(name: str, capability: tuple[int, int], trt_version: str) -> types.ModuleType:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: capability)
        module = make_fake_tensorrt(trt_version)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        return module

    engines = tmp_path / "engines"
    spec = BackendSpec(backend="trt", device="cuda", artefacts_dir=engines)
    options = InferOptions(stage="coarse", backend=spec)
    sha = {4: SceneWorker(options, None, 1).pool.model(4).info.sha256}
    folder = engines / f"coarsr-x4-c5-{sha[4][:12]}"

    gpu("NVIDIA H100 80GB HBM3", (9, 0), "10.13.0.35")  # the first node: builds its plan
    info = SceneWorker(options, None, 1).prepare(__version__, str(tmp_path), str(tmp_path), sha, [(4, 5)])
    assert info["backends"] == ["trt-fp32"]
    assert sorted(p.name for p in folder.glob("*.plan")) == ["coarsr_x4_c5_fp32.sm90.plan"]

    trt = gpu("NVIDIA A100-SXM4-80GB", (8, 0), "10.13.0.35")  # another architecture: its own plan, sm90 untouched
    stamp = (folder / "coarsr_x4_c5_fp32.sm90.plan").stat().st_mtime_ns
    SceneWorker(options, None, 1).prepare(__version__, str(tmp_path), str(tmp_path), sha, [(4, 5)])
    assert sorted(p.name for p in folder.glob("*.plan")) == [
        "coarsr_x4_c5_fp32.sm80.plan",
        "coarsr_x4_c5_fp32.sm90.plan",
    ]
    assert (folder / "coarsr_x4_c5_fp32.sm90.plan").stat().st_mtime_ns == stamp
    assert any(call[0] == "deserialize" for call in trt.calls)

    trt = gpu("NVIDIA H100 80GB HBM3", (9, 0), "10.14.1.48")  # same GPU, other TensorRT: refused, not loaded
    with pytest.raises(WorkerRefusedError, match=r"built for tensorrt '10.13.0.35', running on '10.14.1.48'.*rebuild"):
        SceneWorker(options, None, 1).prepare(__version__, str(tmp_path), str(tmp_path), sha, [(4, 5)])
    assert not any(call[0] == "deserialize" for call in trt.calls)


def test_without_ray_cluster_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    archive = tmp_path / "lr"
    write_scene(archive / "a.h5", lr_scene(0, 16, 5))
    result = runner.invoke(app, ["infer", str(archive), "-o", str(tmp_path / "out"), "--cluster", "local:2"])
    assert result.exit_code == 2
    assert "pip install 'dualsr-deploy[cluster]'" in result.output
    assert not (tmp_path / "out").exists()
    bad = runner.invoke(app, ["infer", str(archive), "-o", str(tmp_path / "out"), "--cluster", "head:6379"])
    assert bad.exit_code == 2
    assert "ray://HOST:PORT" in bad.output


# --- on a local Ray cluster -----------------------------------------------------------------------------------------


def need_ray() -> types.ModuleType:
    return pytest.importorskip("ray", reason="the cluster tests need Ray: pip install 'dualsr-deploy[cluster]'")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = need_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine scenes: 5- and 31-band, HDF5 and .npy, small enough to stay in memory or streamed under BUDGET; one
    whose data is all NaN (no valid pixel), which fails deterministically when it is read."""
    folder = tmp_path_factory.mktemp("cluster-archive")
    for index in range(8):
        bands = 5 if index % 2 else 31
        suffix = ".npy" if index % 3 == 0 else ".h5"
        write_scene(folder / f"s{index}{suffix}", lr_scene(index, 20 + 2 * index, bands))
    bad = lr_scene(9, 16, 5)
    bad.cube[:] = np.nan
    write_scene(folder / "z_nan.h5", Scene(bad.name, bad.cube, bad.meta))  # last, so a kill never lands on it
    return folder


OPTIONS = InferOptions(tile=16, memory_budget=BUDGET, format="h5")
RESUME = replace(OPTIONS, resume=True)


@pytest.fixture(scope="module")
def single(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "out"
    assert run_archive(archive, out, OPTIONS).exit_code == 1
    return out


def test_cluster_run_equals_the_single_process_run(
    local_ray: None, archive: Path, single: Path, tmp_path: Path
) -> None:
    plan = plan_archive(open_archive(archive), tmp_path, OPTIONS, hashes=False)
    assert {p.mode for p in plan} == {"memory", "streamed"}  # both paths are exercised
    out = tmp_path / "out"
    events: list[Event] = []
    result = run_archive(archive, out, OPTIONS, cluster=ClusterSpec.parse("local:2"), progress=events.append)
    assert result.exit_code == 1
    assert_same_outputs(single, out)
    records = manifest(out)
    assert sorted(r["name"] for r in records) == sorted(r["name"] for r in manifest(single))  # once each
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["name"] for r in failed] == ["z_nan"]
    assert "no band holds a valid value" in str(failed[0]["error"])
    assert all(str(r["worker"]).count(":") == 1 for r in records)  # host:pid of the worker that wrote it
    assert sum("ready" in e.text for e in events if e.kind == "message") == 2
    assert not leftovers(out)


def test_cluster_and_local_runs_resume_each_other(local_ray: None, archive: Path, single: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(single, out)  # a local run's folder, continued on the cluster
    (out / "s4.h5").unlink()
    again = run_archive(archive, out, RESUME, cluster=ClusterSpec.parse("local:2"))
    assert [r.name for r in again.ok] == ["s4"]
    assert len(again.skipped) == 7
    (out / "s1.h5").unlink()  # and the cluster's folder continued locally
    local = run_archive(archive, out, RESUME)
    assert [r.name for r in local.ok] == ["s1"]
    assert_same_outputs(single, out)


def kill_one_worker_mid_scene(
    times: int = 1, running: bytes = b"ray::SceneWorker.process"
) -> tuple[threading.Thread, list[int]]:
    """Watch for Ray worker processes titled ``running`` (one running a scene) and SIGKILL ``times`` of them, as an
    OOM killer or a lost node would."""
    killed: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + 120
        while len(killed) < times and time.monotonic() < deadline:
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) in killed:
                    continue
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if title.startswith(running):
                    time.sleep(0.05)  # well inside the scene
                    with contextlib.suppress(OSError):
                        if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(running):
                            continue  # finished meanwhile: wait for the next one
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    break
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed


def test_a_worker_killed_mid_scene_still_ends_with_every_scene_written_once(
    local_ray: None, archive: Path, single: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    watcher, killed = kill_one_worker_mid_scene()
    events: list[Event] = []
    result = run_archive(archive, out, OPTIONS, cluster=ClusterSpec.parse("local:2"), progress=events.append)
    watcher.join()
    assert len(killed) == 1
    assert result.exit_code == 1  # the NaN scene alone
    records = manifest(out)
    names = [r["name"] for r in records]
    assert sorted(names) == sorted(set(names))  # one record per scene: the dead worker's scene was not lost
    assert {r["name"] for r in records if r["status"] == "ok"} == {f"s{i}" for i in range(8)}
    retried = [r for r in records if any("retried after its worker died" in n for n in r.get("notes", []))]
    assert 1 <= len(retried) <= SLOTS  # what the killed worker held: one scene computing, maybe one being written
    assert any("died" in e.text and "retrying it (1/2)" in e.text for e in events if e.kind == "message")
    assert_same_outputs(single, out)
    assert not leftovers(out)


def test_retries_are_bounded(local_ray: None, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    watcher, killed = kill_one_worker_mid_scene()
    spec = ClusterSpec.parse("local:2", retries=0)
    result = run_archive(archive, out, OPTIONS, cluster=spec)
    watcher.join()
    assert len(killed) == 1
    records = manifest(out)
    gave_up = sorted(str(r["name"]) for r in records if "given up after 0 retries" in str(r.get("error")))
    assert 1 <= len(gave_up) <= SLOTS
    assert len(result.ok) == 8 - len(gave_up)
    assert sorted(r["name"] for r in records) == sorted({str(r["name"]) for r in records})
    resumed = run_archive(archive, out, RESUME, cluster=spec)
    assert sorted(r.name for r in resumed.ok) == gave_up  # --resume picks up what was given up


def test_workers_that_all_refuse_fail_the_scenes_with_the_reason(
    local_ray: None, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "dualsr_deploy.infer.executors.ray_driver.__version__", "0.0.1"
    )  # the driver only: workers differ
    result = run_archive(archive, tmp_path / "out", OPTIONS, cluster=ClusterSpec.parse("local:2"))
    assert result.exit_code == 1
    assert not result.ok
    assert all(
        "no cluster worker could run it" in str(r.error) and "the driver 0.0.1" in str(r.error) for r in result.failed
    )


def test_a_busy_cluster_is_waited_for_with_a_notice(
    local_ray: None, archive: Path, single: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = need_ray()
    monkeypatch.setattr("dualsr_deploy.infer.executors.ray_driver.WAIT_NOTICE_S", 1.0)

    class Hog:  # another job holding both CPUs
        def ready(self) -> bool:
            return True

    hog = ray.remote(Hog).options(num_cpus=2).remote()
    assert ray.get(hog.ready.remote())
    notices: list[str] = []

    def progress(event: Event) -> None:
        if event.kind == "message" and "no worker is ready" in event.text:
            notices.append(event.text)
            ray.kill(hog)  # the other job ends: Ray places the workers

    result = run_archive(archive, tmp_path / "out", OPTIONS, cluster=ClusterSpec.parse("local:2"), progress=progress)
    assert len(notices) == 1
    assert "2 waiting to be placed or started" in notices[0]
    assert "ray status" in notices[0]
    assert result.exit_code == 1  # the NaN scene alone
    assert_same_outputs(single, tmp_path / "out")


def test_a_gpu_engine_on_a_cluster_without_gpus_is_refused_before_anything_is_written(
    local_ray: None, archive: Path, tmp_path: Path
) -> None:
    options = InferOptions(backend=BackendSpec(backend="trt", device="cuda"))
    with pytest.raises(ClusterError, match="the cluster has no GPU for --device cuda"):
        run_archive(archive, tmp_path / "out", options, cluster=ClusterSpec.parse("local:2"))
    assert not (tmp_path / "out").exists()


def test_cli_starts_its_own_local_cluster(archive: Path, single: Path, tmp_path: Path) -> None:
    need_ray()
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    command = [sys.executable, "-m", "dualsr_deploy", "infer", str(archive), "-o", str(out), "--tile", "16"]
    command += ["--memory-budget", str(BUDGET), "--format", "h5", "--cluster", "local:2"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # the NaN scene
    assert "Ray cluster local:2: 2 worker(s)" in done.stdout
    assert "8 done, 1 failed, 0 skipped" in done.stdout
    assert_same_outputs(single, out)


@pytest.mark.slow
def test_ctrl_c_on_a_cluster_run_keeps_finished_scenes_and_a_local_run_resumes_it(
    archive_of_eight: tuple[Path, Path], tmp_path: Path
) -> None:
    need_ray()
    archive, reference = archive_of_eight
    out = tmp_path / "out"
    interrupt_after_first_scene(archive, out, "--cluster", "local:2")
    resumed = infer_process(archive, out, "--resume")  # on this machine alone, without Ray
    assert resumed.wait(timeout=300) == 0, resumed.communicate()[0].decode()[-2000:]
    assert sorted(str(r["name"]) for r in manifest(out) if r["status"] == "ok") == [f"s{i}" for i in range(8)]
    for seed in range(8):
        assert np.array_equal(read_scene(out / f"s{seed}.h5").cube, read_scene(reference / f"s{seed}.h5").cube)
    assert not leftovers(out)
