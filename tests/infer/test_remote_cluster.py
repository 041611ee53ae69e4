"""Ray without a shared folder: ``dualsr infer s3://… -o s3://… --cluster local:2`` against the S3 API server on
127.0.0.1. The workers read the scenes and upload the outputs themselves (the driver is shown never to open a scene
or upload an output); the outputs are the local run's, bit for bit; a worker killed mid-scene costs no scene; the
driver checks every record a worker returns against the bucket."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy._version import __version__
from dualsr_deploy.cli.main import app
from dualsr_deploy.data.archive import ArchiveEntry
from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.data.remote import Remote
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.errors import WorkerRefusedError
from dualsr_deploy.infer import Event, InferOptions, remote_scene, run_archive
from dualsr_deploy.infer.executors import ray_remote
from dualsr_deploy.infer.executors.ray_remote import RemoteSceneWorker, _RemoteRayRun
from dualsr_deploy.infer.executors.ray_spec import ClusterSpec
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.plan import PlannedScene
from dualsr_deploy.infer.remote_output import RemoteOutput
from dualsr_deploy.infer.remote_plan import list_scenes
from tests.infer.conftest import lr_scene, same_output, upload
from tests.infer.test_cluster import kill_one_worker_mid_scene

pytest.importorskip("s3fs")
pytest.importorskip("moto")
pytest.importorskip("ray", reason="the cluster tests need Ray: pip install 'dualsr-deploy[cluster]'")

runner = CliRunner()
OPTIONS = InferOptions(scale=2, tile=16, stac=True)
SAME = ("name", "status", "shape_in", "shape_out", "backend", "stage", "scale", "mode", "tiles", "weights", "notes")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Scenes of every kind a worker meets: HDF5 and GeoTIFF objects read by range, an ENVI pair downloaded, one in
    a sub-folder, and one whose data is all NaN (a scene's own failure); and a local run's outputs of them."""
    folder = tmp_path_factory.mktemp("remote-cluster")
    write_scene(folder / "lr" / "g0.h5", lr_scene(0, 16, 31, scale=2))
    write_scene(folder / "lr" / "g1.h5", lr_scene(1, 18, 31, scale=2))
    write_scene(folder / "lr" / "t2.tif", lr_scene(2, 16, 31, scale=2))
    write_scene(folder / "lr" / "envi" / "e3.hdr", lr_scene(3, 16, 31, scale=2))
    write_scene(folder / "lr" / "deep" / "g4.h5", lr_scene(4, 16, 31, scale=2))
    bad = lr_scene(5, 16, 31, scale=2)
    write_scene(folder / "lr" / "z_nan.h5", Scene(bad.name, np.full_like(bad.cube, np.nan), bad.meta))
    report = run_archive(folder / "lr", folder / "local", OPTIONS)
    assert report.exit_code == 1  # the NaN scene
    return folder / "lr", folder / "local"


def records_of(fs: Any, key: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in map(json.loads, fs.cat(key).decode().splitlines())}


def test_workers_read_and_write_the_bucket_themselves(
    s3: Any, archive: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lr, local = archive
    cache = tmp_path / "cache"
    monkeypatch.setenv("DUALSR_CACHE_DIR", str(cache))  # the workers' folders on their node (inherited by Ray's)
    source, out = upload(s3, lr, "granules"), f"s3://{s3.bucket}/sr/"

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the driver opened a scene or uploaded an output")

    with monkeypatch.context() as driver_only:  # this process is the driver; Ray's workers are other processes
        for name in ("stage", "open_paths", "open_archive"):
            driver_only.setattr(remote_scene, name, refuse)
        driver_only.setattr(RemoteOutput, "upload", refuse)
        messages: list[str] = []
        result = run_archive(
            source, out, OPTIONS, cluster=ClusterSpec.parse("local:2"), progress=lambda e: messages.append(e.text)
        )
    assert result.exit_code == 1, result.records  # the NaN scene alone
    assert any("upload to" in text and "themselves" in text for text in messages)
    records = records_of(s3, f"{s3.bucket}/sr/manifest.jsonl")
    expected = {r["name"]: r for r in map(json.loads, (local / "manifest.jsonl").read_text().splitlines())}
    assert set(records) == set(expected) == {"g0", "g1", "t2", "envi/e3", "deep/g4", "z_nan"}
    for name, record in records.items():
        assert {k: record.get(k) for k in SAME} == {k: expected[name].get(k) for k in SAME}, (name, record.get("error"))
        assert record["input"].startswith(source)
        assert record["worker"].rsplit(":", 1)[1] != str(os.getpid())  # written by a worker, not the driver
    assert records["envi/e3"]["input_sha256"] == expected["envi/e3"]["input_sha256"]  # downloaded: hashed as locally
    assert "no band holds a valid value" in records["z_nan"]["error"]
    assert records["z_nan"]["input"] == source + "z_nan.h5"
    for name, suffix in [("g0", ".h5"), ("t2", ".tif"), ("envi/e3", ".hdr"), ("deep/g4", ".h5")]:
        same_output(s3, f"{s3.bucket}/sr/{name}{suffix}", local / f"{name}{suffix}", tmp_path)
        assert records[name]["output"] == expected[name]["output"]
        assert any(item["url"].endswith(".item.json") for item in records[name]["output_objects"])  # --stac
    assert s3.exists(f"{s3.bucket}/sr/catalog.json")
    assert not s3.exists(f"{s3.bucket}/sr/.dualsr.lock")
    assert not any(cache.glob("dualsr-worker.*"))  # each worker removed its folder

    s3.rm(f"{s3.bucket}/sr/g1.h5")  # an output gone: redone on the cluster, the rest skipped
    resume = InferOptions(scale=2, tile=16, stac=True, resume=True)
    again = run_archive(source, out, resume, cluster=ClusterSpec.parse("local:2"))
    assert sorted(r.name for r in again.ok) == ["g1"]
    assert len(again.skipped) == 4
    plain = run_archive(source, out, resume)  # and without Ray
    assert not plain.ok
    assert len(plain.skipped) == 5


def test_a_worker_killed_mid_scene_costs_no_scene(s3: Any, tmp_path: Path) -> None:
    lr = tmp_path / "lr"
    for seed in range(4):  # scenes long enough (a second or more each) for the kill to land inside one
        write_scene(lr / f"k{seed}.h5", lr_scene(seed, 40, 31, scale=2))
    local = tmp_path / "local"
    assert run_archive(lr, local, OPTIONS).exit_code == 0
    source, out = upload(s3, lr, "granules"), f"s3://{s3.bucket}/sr/"
    watcher, killed = kill_one_worker_mid_scene(running=b"ray::RemoteSceneWorker.process")
    events: list[Event] = []
    result = run_archive(source, out, OPTIONS, cluster=ClusterSpec.parse("local:2"), progress=events.append)
    watcher.join()
    assert len(killed) == 1
    assert result.exit_code == 0
    names = [json.loads(line)["name"] for line in s3.cat(f"{s3.bucket}/sr/manifest.jsonl").decode().splitlines()]
    assert sorted(names) == sorted(set(names)) == ["k0", "k1", "k2", "k3"]  # each once: none lost, none twice
    retried = [r for r in result.records if any("retried after its worker died" in n for n in r.notes)]
    assert len(retried) >= 1
    assert any("died" in e.text and "retrying it (1/2)" in e.text for e in events if e.kind == "message")
    for name in names:
        same_output(s3, f"{s3.bucket}/sr/{name}.h5", local / f"{name}.h5", tmp_path)


def test_a_worker_that_cannot_see_the_run_refuses_and_its_records_are_checked(
    s3: Any, archive: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lr, _ = archive
    source, out = upload(s3, lr, "granules"), f"s3://{s3.bucket}/sr/"
    worker = RemoteSceneWorker(OPTIONS, None, 1, source, out, None)
    with pytest.raises(WorkerRefusedError, match="does not see the run's lock object"):
        worker.prepare(__version__, {})  # no run holds the lock: other credentials or another endpoint look so
    with pytest.raises(WorkerRefusedError, match=r"the driver 0\.0\.0"):
        worker.prepare("0.0.0", {})

    sink = RemoteOutput(out, None)
    s3.pipe(sink.lock_url.removeprefix("s3://"), b"{}")  # a run holds the prefix: the worker sees it and is ready
    worker.prepare(__version__, {})
    groups = {g.name: g for g in list_scenes(Remote.of(source), source, tmp_path, None).groups}
    record = worker.process(groups["envi/e3"])  # downloaded on the worker, computed, uploaded, removed there
    assert record.status == "ok", record.error
    assert record.output == "envi/e3.hdr"  # relative to the prefix: the driver's manifest makes it its own
    assert sorted(item["url"].rsplit("/", 1)[1] for item in record.output_objects) == sorted(
        p.name for p in (archive[1] / "envi").iterdir() if p.name.startswith("e3")
    )
    assert worker.work is not None
    assert not any(worker.work.iterdir())
    monkeypatch.setattr(ray_remote, "free_bytes", lambda _folder: 1 << 20)
    full = worker.process(groups["envi/e3"])
    assert full.status == "failed"
    assert "to download and worker" in str(full.error)
    worker.close()

    (tmp_path / "g0.h5").write_bytes(b"an output")
    good = sink.upload(tmp_path / "g0.h5", tmp_path)
    run = _RemoteRayRun.__new__(_RemoteRayRun)
    run.remote = types.SimpleNamespace(sink=sink)  # type: ignore[assignment]
    planned = PlannedScene(ArchiveEntry("g0", Path("g0.h5"), origin=source + "g0.h5"), "run")

    def ok(**fields: Any) -> SceneRecord:
        return SceneRecord("g0", source + "g0.h5", "ok", **{"output": "g0.h5", "output_objects": [good], **fields})

    assert run._problem(ok(), planned) is None
    hostile = {
        "an object outside the prefix": ok(output_objects=[{**good, "url": f"s3://{s3.bucket}/elsewhere/g0.h5"}]),
        "a size the object does not have": ok(output_objects=[{**good, "bytes": 1}]),
        "an output path that climbs": ok(output="../g0.h5"),
        "ok without an uploaded output": ok(output_objects=[]),
        "another scene's record": SceneRecord("g1", source + "g1.h5", "failed", error="x"),
    }
    for what, record in hostile.items():
        assert run._problem(record, planned) is not None, what


def test_the_python_api_sends_torch_to_the_workers_whatever_auto_chose_here(
    s3: Any, archive: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run_archive`` with a cluster and object storage: the workers may have other runtimes than this machine, so
    an auto-chosen backend becomes torch, and no family's route chooses another (as the local path and the CLI)."""
    from types import SimpleNamespace

    from dualsr_deploy.backends import choice as choice_module
    from dualsr_deploy.backends.choice import BackendChoice
    from dualsr_deploy.infer import BackendSpec
    from dualsr_deploy.weights import FamilyChoice

    lr, _ = archive
    source = upload(s3, lr, "api-cluster")
    monkeypatch.setattr(choice_module, "choose_backend", lambda *_args: BackendChoice("onnx", "timed fastest here"))
    options = InferOptions(scale=2, tile=16, backend=BackendSpec(backend="auto"))
    assert options.backend.backend == "onnx"
    sent: list[InferOptions] = []

    def on_cluster(cluster: object, options: InferOptions, todo: object, **_rest: object) -> SimpleNamespace:
        sent.append(options)
        return SimpleNamespace(backends=[], broken=[], interrupted=False)

    monkeypatch.setattr(ray_remote, "run_on_cluster", on_cluster)
    run_archive(source, f"s3://{s3.bucket}/api-cluster-out/", options, cluster=ClusterSpec.parse("local:2"))
    (given,) = sent
    assert given.backend.backend == "torch"
    airborne = given.for_weights(FamilyChoice("airborne", "100 bands"))
    assert airborne is not None
    assert airborne.backend.backend == "torch"


def test_a_cluster_needs_both_ends_in_object_storage(s3: Any, archive: tuple[Path, Path], tmp_path: Path) -> None:
    lr, _ = archive
    result = runner.invoke(
        app, ["infer", str(lr), "-o", f"s3://{s3.bucket}/sr/", "--scale", "2", "--cluster", "local:2"]
    )
    assert result.exit_code == 2
    assert "both the archive and -o must be there" in " ".join(result.output.split())
