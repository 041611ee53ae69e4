"""Archives where they live: ``dualsr infer`` with an S3 API server and an HTTP server on 127.0.0.1 (tests/servers.py):
outputs bit-identical to a local run of the same scenes, manifests equal up to paths, a killed run resumed, resume
decided without downloading, hostile keys and refused objects as scene failures, and one line for missing
credentials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data import read_scene
from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.errors import RemoteError, RunError
from dualsr_deploy.infer import InferOptions, run_archive
from dualsr_deploy.infer.remote_output import RemoteOutput
from tests.infer.conftest import lr_scene, same_output, upload
from tests.servers import http_server

pytest.importorskip("s3fs")
pytest.importorskip("moto")

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
ARGS = ["--scale", "2", "--tile", "16"]
SAME_UP_TO_PATHS = ("name", "status", "input_sha256", "shape_in", "shape_out", "backend", "stage", "scale", "mode",
                    "tiles", "sam_weight", "weights", "consistency", "notes")  # fmt: skip


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six small scenes (HDF5, ENVI with its data file, one in a sub-folder) and a local run's outputs."""
    folder = tmp_path_factory.mktemp("remote")
    for seed in range(4):
        write_scene(folder / "lr" / f"g{seed}.h5", lr_scene(seed, 16, 31, scale=2))
    write_scene(folder / "lr" / "envi" / "e4.hdr", lr_scene(4, 16, 31, scale=2))
    write_scene(folder / "lr" / "deep" / "g5.h5", lr_scene(5, 16, 31, scale=2))
    report = run_archive(folder / "lr", folder / "local", InferOptions(scale=2, tile=16))
    assert report.exit_code == 0
    return folder / "lr", folder / "local"


def manifest(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_an_s3_archive_into_s3_is_the_local_run(s3: Any, archive: tuple[Path, Path], tmp_path: Path) -> None:
    lr, local = archive
    source = upload(s3, lr, "granules")
    out = f"s3://{s3.bucket}/sr/"
    result = runner.invoke(app, ["infer", source, "-o", out, *ARGS], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"manifest: {out}manifest.jsonl" in " ".join(result.output.split()).replace("manifest: ", "manifest: ")
    records = {r["name"]: r for r in manifest(s3.cat(f"{s3.bucket}/sr/manifest.jsonl").decode())}
    expected = {r["name"]: r for r in manifest((local / "manifest.jsonl").read_text())}
    assert set(records) == set(expected) == {"g0", "g1", "g2", "g3", "envi/e4", "deep/g5"}
    for name, record in records.items():
        # a scene read by range is fingerprinted by its object's key, size and ETag (its bytes are never all read
        # before it runs): only a staged scene's (the ENVI pair) is the SHA-256 of its bytes, as locally
        same = [k for k in SAME_UP_TO_PATHS if k != "input_sha256" or name == "envi/e4"]
        assert {k: record.get(k) for k in same} == {k: expected[name].get(k) for k in same}
        assert record["input"].startswith(source)
        assert all(item["etag"] for item in record["input_files"])
        assert record["output"] == expected[name]["output"]  # relative to the manifest, as locally
        for item in record["output_objects"]:
            assert s3.info(item["url"].removeprefix("s3://"))["size"] == item["bytes"]
    for name in ("g0", "envi/e4", "deep/g5"):
        suffix = ".hdr" if name.startswith("envi") else ".h5"
        same_output(s3, f"{s3.bucket}/sr/{name}{suffix}", local / f"{name}{suffix}", tmp_path)
    envi = sorted(item["url"].rsplit("/", 1)[1] for item in records["envi/e4"]["output_objects"])
    assert envi == sorted(p.name for p in (local / "envi").iterdir())  # header, data file and sidecar, all uploaded
    assert not s3.exists(f"{s3.bucket}/sr/.dualsr.lock")

    again = runner.invoke(app, ["infer", source, "-o", out, *ARGS, "--resume"], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "0 done, 0 failed, 6 skipped" in " ".join(again.output.split())
    s3.pipe(f"{s3.bucket}/granules/g1.h5", (lr / "g2.h5").read_bytes())  # an input changed: redone
    s3.rm(f"{s3.bucket}/sr/g3.h5")  # an output gone: redone
    third = runner.invoke(app, ["infer", source, "-o", out, *ARGS, "--resume"], terminal_width=200)
    assert third.exit_code == 0, third.output
    assert "2 done, 0 failed, 4 skipped" in " ".join(third.output.split())
    refused = runner.invoke(app, ["infer", source, "-o", out, *ARGS])
    assert refused.exit_code == 2
    assert "--resume" in refused.output


def test_a_local_archive_into_s3_and_an_s3_archive_into_a_folder(
    s3: Any, archive: tuple[Path, Path], tmp_path: Path
) -> None:
    lr, local = archive
    up = runner.invoke(app, ["infer", str(lr), "-o", f"s3://{s3.bucket}/up", *ARGS])
    assert up.exit_code == 0, up.output
    same_output(s3, f"{s3.bucket}/up/deep/g5.h5", local / "deep" / "g5.h5", tmp_path)
    resumed = runner.invoke(app, ["infer", str(lr), "-o", f"s3://{s3.bucket}/up", *ARGS, "--resume"])
    assert "0 done, 0 failed, 6 skipped" in " ".join(resumed.output.split())
    source = upload(s3, lr, "in")
    down = runner.invoke(app, ["infer", source, "-o", str(tmp_path / "down"), *ARGS])
    assert down.exit_code == 0, down.output
    for name in ("g0.h5", "envi/e4.hdr", "deep/g5.h5"):
        assert np.array_equal(read_scene(tmp_path / "down" / name).cube, read_scene(local / name).cube)
    records = manifest((tmp_path / "down" / "manifest.jsonl").read_text())
    assert all(r["input"].startswith(source) for r in records)
    import h5py

    with h5py.File(tmp_path / "down" / "g0.h5") as handle:  # the provenance names the object, not its staged copy
        assert json.loads(handle["cube"].attrs["dualsr_scene"])["source"] == f"{source}g0.h5"


def test_a_killed_run_resumes_every_scene_once(s3: Any, tmp_path: Path) -> None:
    lr = tmp_path / "lr"
    for seed in range(8):  # large enough that the run is killed part-way
        write_scene(lr / f"k{seed}.h5", lr_scene(seed, 48, 31, scale=2))
    source = upload(s3, lr, "granules")
    out = f"s3://{s3.bucket}/sr/"
    command = [sys.executable, "-m", "dualsr_deploy", "infer", source, "-o", out, *ARGS]
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DUALSR_STAGE_BUDGET": "600K", "DUALSR_RANGE_READS": "0"}
    env["DUALSR_CACHE_DIR"] = str(cache)
    # every scene downloaded, a window a scene: the staging path, killed part-way
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    key = f"{s3.bucket}/sr/manifest.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        s3.invalidate_cache()
        if s3.exists(key) and s3.cat(key).decode().count('"status": "ok"') >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    s3.invalidate_cache()
    before = sum(r["status"] == "ok" for r in manifest(s3.cat(key).decode()))
    assert before < 8, "the run finished before it could be killed"
    assert [p.name.split(".")[2] for p in cache.iterdir()] == [str(process.pid)]  # the killed run's folder, left
    resumed = subprocess.run([*command, "--resume"], cwd=REPO, env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout.decode()[-2000:]
    s3.invalidate_cache()
    records = manifest(s3.cat(key).decode())
    assert sorted(r["name"] for r in records if r["status"] == "ok") == [f"k{seed}" for seed in range(8)]
    assert not s3.exists(f"{s3.bucket}/sr/.dualsr.lock")
    assert not any(cache.iterdir())  # and removed by the next run on this host, which removed its own at the end


def test_ctrl_c_on_a_remote_run_exits_130_releases_the_lock_and_resumes(s3: Any, tmp_path: Path) -> None:
    lr = tmp_path / "lr"
    for seed in range(8):
        write_scene(lr / f"c{seed}.h5", lr_scene(seed, 48, 31, scale=2))
    source, out = upload(s3, lr, "granules"), f"s3://{s3.bucket}/sr/"
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DUALSR_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "dualsr_deploy", "infer", source, "-o", out, *ARGS]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    key = f"{s3.bucket}/sr/manifest.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        s3.invalidate_cache()
        if s3.exists(key) and '"status": "ok"' in s3.cat(key).decode():
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 130, output[-2000:]  # work left undone: never 0
    assert "--resume" in output
    s3.invalidate_cache()
    assert not s3.exists(f"{s3.bucket}/sr/.dualsr.lock")  # released on the way out
    assert not any(cache.iterdir())  # and its folder removed
    done = [r["name"] for r in manifest(s3.cat(key).decode()) if r["status"] == "ok"]
    assert 1 <= len(done) < 8
    resumed = subprocess.run([*command, "--resume"], cwd=REPO, env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout.decode()[-2000:]
    s3.invalidate_cache()
    names = [r["name"] for r in manifest(s3.cat(key).decode()) if r["status"] == "ok"]
    assert sorted(names) == [f"c{seed}" for seed in range(8)]  # each once: the finished ones were not redone


def test_hostile_keys_and_missing_objects_are_scene_failures(s3: Any, archive: tuple[Path, Path]) -> None:
    import boto3

    lr, _ = archive
    source = upload(s3, lr, "granules")
    client = boto3.client("s3")
    client.put_object(Bucket=s3.bucket, Key="granules/../escape.h5", Body=(lr / "g0.h5").read_bytes())
    client.put_object(Bucket=s3.bucket, Key="granules/bell\x07.h5", Body=(lr / "g0.h5").read_bytes())
    listing = "g0.h5\nmissing.h5\n../outside.h5\n"
    s3.pipe(f"{s3.bucket}/granules/list.txt", listing.encode())
    out = f"s3://{s3.bucket}/sr"
    result = runner.invoke(app, ["infer", source, "-o", out, *ARGS], terminal_width=240)
    assert result.exit_code == 1, result.output
    records = {r["input"]: r for r in manifest(s3.cat(f"{s3.bucket}/sr/manifest.jsonl").decode())}
    failed = {url: r["error"] for url, r in records.items() if r["status"] == "failed"}
    assert any("'..' part" in why for why in failed.values())
    assert any("control character" in why for why in failed.values())
    assert sum(r["status"] == "ok" for r in records.values()) == 6
    assert not [key for key in s3.find(s3.bucket) if "escape" in key and "/sr/" in key]
    listed = runner.invoke(app, ["infer", f"{source}list.txt", "-o", f"s3://{s3.bucket}/from-list", *ARGS])
    assert listed.exit_code == 1, listed.output
    from_list = manifest(s3.cat(f"{s3.bucket}/from-list/manifest.jsonl").decode())
    errors = " ".join(str(r.get("error")) for r in from_list)
    assert "not found (404)" in errors
    assert "outside the list's folder" in errors
    assert [r["name"] for r in from_list if r["status"] == "ok"] == ["g0"]


def test_missing_credentials_and_a_locked_folder_are_one_line(
    s3: Any, archive: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lr, _ = archive
    source = upload(s3, lr, "granules")
    with RemoteOutput(f"s3://{s3.bucket}/sr", None).locked([]):
        held = runner.invoke(app, ["infer", source, "-o", f"s3://{s3.bucket}/sr", *ARGS])
        assert held.exit_code == 2
        assert "another dualsr run is writing here" in " ".join(held.output.split())
        with pytest.raises(RunError, match="a whole run"), RemoteOutput(f"s3://{s3.bucket}/sr", _shard()).locked([]):
            pass
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    missing = runner.invoke(app, ["infer", source, "-o", str(tmp_path / "out"), *ARGS])
    assert missing.exit_code == 2
    text = " ".join(missing.output.split())
    assert "no credentials" in text
    assert source in text


def _shard() -> Any:
    from dualsr_deploy.infer.shards import Shard

    return Shard(1, 2)


def test_an_archive_over_http(archive: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lr, local = archive
    (lr.parent / "served").mkdir(exist_ok=True)
    served = lr.parent / "served"
    for path in [*lr.rglob("*")]:
        if path.is_file():
            target = served / path.relative_to(lr)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (served / "forbidden.h5").write_bytes((lr / "g0.h5").read_bytes())
    (served / "scenes.txt").write_text("g0.h5\nenvi/e4.hdr\nforbidden.h5\n")
    monkeypatch.setenv("DUALSR_BEARER_TOKEN", "not-for-plain-http")
    with http_server(served) as (base, log):
        result = runner.invoke(app, ["infer", f"{base}scenes.txt", "-o", str(tmp_path / "sr"), *ARGS])
    assert result.exit_code == 1, result.output
    records = {r["name"]: r for r in manifest((tmp_path / "sr" / "manifest.jsonl").read_text())}
    assert records["g0"]["status"] == "ok"
    assert records["envi/e4"]["status"] == "ok"  # its data file staged with its header, though the list names one
    for name in ("g0.h5", "envi/e4.hdr"):
        assert np.array_equal(read_scene(tmp_path / "sr" / name).cube, read_scene(local / name).cube)
    (failed,) = [r for r in records.values() if r["status"] == "failed"]
    assert "access refused (403)" in failed["error"]
    assert log.authorizations == []  # a bearer token is never sent in the clear
    gets = [r for r in log.requests if r[0] == "GET" and r[1].endswith("/g0.h5")]
    assert gets
    assert all(byte_range is not None for _method, _path, byte_range in gets)  # read by range, not downloaded
    (served / "forbidden.h5").unlink()
    (served / "scenes.txt").unlink()
    with http_server(served) as (base, log):  # the folder itself, from its index pages: its scenes, sizes unknown
        folder = runner.invoke(app, ["infer", base, "-o", str(tmp_path / "all"), *ARGS])
    assert folder.exit_code == 0, folder.output
    names = sorted(r["name"] for r in manifest((tmp_path / "all" / "manifest.jsonl").read_text()))
    assert names == sorted(r["name"] for r in manifest((local / "manifest.jsonl").read_text()))


def test_a_stac_item_collection_in_a_bucket_into_a_bucket(s3: Any, archive: tuple[Path, Path], tmp_path: Path) -> None:
    import pystac

    lr, local = archive
    source = upload(s3, lr, "granules")
    features = []
    for ident, href in [
        ("first", f"{source}g0.h5"),
        ("envi", f"{source}envi/e4.hdr"),
        ("local", "/srv/secret/scene.h5"),
    ]:
        item = pystac.Item(ident, None, None, __import__("datetime").datetime(2024, 1, 1), {})
        item.add_asset("data", pystac.Asset(href, roles=["data"]))
        features.append(item.to_dict(include_self_link=False))
    features[1]["assets"]["binary"] = {"href": f"{source}envi/e4.img", "roles": ["data"]}  # its data file, too
    s3.pipe(f"{s3.bucket}/items.json", json.dumps({"type": "FeatureCollection", "features": features}).encode())
    out = f"s3://{s3.bucket}/stac-out/"
    result = runner.invoke(app, ["infer", f"s3://{s3.bucket}/items.json", "-o", out, *ARGS, "--stac"])
    assert result.exit_code == 1, result.output
    records = {r["name"]: r for r in manifest(s3.cat(f"{s3.bucket}/stac-out/manifest.jsonl").decode())}
    assert {n for n, r in records.items() if r["status"] == "ok"} == {"first", "envi"}, {
        n: r.get("error") for n, r in records.items()
    }
    assert "a remote document names a local path" in records["local"]["error"]
    catalog = json.loads(s3.cat(f"{s3.bucket}/stac-out/catalog.json"))
    assert sorted(link["href"] for link in catalog["links"] if link["rel"] == "item") == [
        "./envi.item.json",
        "./first.item.json",
    ]
    item = json.loads(s3.cat(f"{s3.bucket}/stac-out/first.item.json"))
    assert [link["href"] for link in item["links"] if link["rel"] == "derived_from"] == [f"{source}g0.h5"]
    # the Item names the header and its data file, not the local run's provenance sidecar: the cube is the same
    same_output(s3, f"{s3.bucket}/stac-out/envi.hdr", local / "envi" / "e4.hdr", tmp_path, attrs=False)
    features[0]["assets"]["data"]["href"] = "./lr/g0.h5"  # the same Items, with local assets, into the bucket
    (lr.parent / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features[:1]}))
    dry = runner.invoke(app, ["infer", str(lr.parent / "items.json"), "-o", f"s3://{s3.bucket}/l/", *ARGS, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    up = runner.invoke(app, ["infer", str(lr.parent / "items.json"), "-o", f"s3://{s3.bucket}/l/", *ARGS, "--stac"])
    assert up.exit_code == 0, up.output
    assert s3.exists(f"{s3.bucket}/l/first.h5")
    assert s3.exists(f"{s3.bucket}/l/first.item.json")


def test_shards_side_by_side_into_a_bucket_then_merged(s3: Any, archive: tuple[Path, Path]) -> None:
    lr, local = archive
    source = upload(s3, lr, "granules")
    out = f"s3://{s3.bucket}/sharded/"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "dualsr_deploy", "infer", source, "-o", out, *ARGS, "--stac", "--shard", f"{i}/3"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for i in (1, 2, 3)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    s3.invalidate_cache()
    parts = sorted(s3.glob(f"{s3.bucket}/sharded/manifest.shard-*"))
    assert len(parts) == 3
    assert not s3.exists(f"{s3.bucket}/sharded/catalog.json")  # left to the merge
    merged = runner.invoke(app, ["manifest", "merge", out], terminal_width=200)
    assert merged.exit_code == 0, merged.output
    assert "6 scenes (6 ok, 0 failed)" in " ".join(merged.output.split())
    s3.invalidate_cache()
    assert not s3.glob(f"{s3.bucket}/sharded/manifest.shard-*")
    names = sorted(r["name"] for r in manifest(s3.cat(f"{s3.bucket}/sharded/manifest.jsonl").decode()))
    assert names == sorted(r["name"] for r in manifest((local / "manifest.jsonl").read_text()))  # each scene once
    catalog = json.loads(s3.cat(f"{s3.bucket}/sharded/catalog.json"))
    assert len([link for link in catalog["links"] if link["rel"] == "item"]) == 6
    empty = runner.invoke(app, ["infer", source, "-o", f"s3://{s3.bucket}/e/", *ARGS, "--shard", "2/2"])
    assert empty.exit_code == 0, empty.output  # these six names all fall in part 1 of 2: part 2 has nothing to do
    assert "shard 2/2: 0 of 6 scenes" in " ".join(empty.output.split())


def test_what_writers_copy_from_the_source_survives_staging(s3: Any, tmp_path: Path) -> None:
    """Writers copy the source's own structure and tags from the source file (a GeoTIFF's tags, an ENVI header's
    entries): a staged scene's outputs keep them as a local run's do, and name the object as their source."""
    rasterio = pytest.importorskip("rasterio")
    lr = tmp_path / "lr"
    lr.mkdir()
    cube = lr_scene(7, 16, 31, scale=2).cube
    profile = {"driver": "GTiff", "height": 16, "width": 16, "count": 31, "dtype": "float32"}
    with rasterio.open(lr / "tagged.tif", "w", **profile) as out:
        out.write(cube)
        out.update_tags(SENSOR="AVIRIS-NG", ACQUISITION_TIME="2023-06-01T18:30:05Z")
        for band in range(31):
            out.update_tags(band + 1, wavelength=str(400 + 10 * band), wavelength_units="nm")
    envi = lr_scene(8, 16, 31, scale=2)
    write_scene(lr / "flight.hdr", envi)
    header = (lr / "flight.hdr").read_text() + "sensor type = AVIRIS-NG\nflight line = ang20230601t183005\n"
    (lr / "flight.hdr").write_text(header)
    local = runner.invoke(app, ["infer", str(lr), "-o", str(tmp_path / "local"), *ARGS])
    assert local.exit_code == 0, local.output
    source = upload(s3, lr, "tagged")
    remote = runner.invoke(app, ["infer", source, "-o", str(tmp_path / "remote"), *ARGS])
    assert remote.exit_code == 0, remote.output
    with rasterio.open(tmp_path / "local" / "tagged.tif") as a, rasterio.open(tmp_path / "remote" / "tagged.tif") as b:
        assert b.tags()["SENSOR"] == "AVIRIS-NG"
        assert {k: v for k, v in b.tags().items() if k != "DUALSR_SCENE"} == {
            k: v for k, v in a.tags().items() if k != "DUALSR_SCENE"
        }
        assert json.loads(b.tags()["DUALSR_SCENE"])["source"] == f"{source}tagged.tif"
        assert b.tags(1) == a.tags(1)
    written = (tmp_path / "remote" / "flight.hdr").read_text()
    assert "flight line = ang20230601t183005" in written
    assert written == (tmp_path / "local" / "flight.hdr").read_text()


@pytest.fixture(scope="module")
def cog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 96 × 96 × 31 Cloud-Optimized GeoTIFF (32-pixel tiles, overviews, UTM grid, tags) and a local run of it,
    streamed under a 2 MB memory budget."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    folder = tmp_path_factory.mktemp("cog")
    cube = np.concatenate([lr_scene(seed, 48, 31, scale=2).cube for seed in (0, 1)], axis=1)
    cube = np.concatenate([cube, cube[:, :, ::-1]], axis=2)
    profile = {"driver": "COG", "height": 96, "width": 96, "count": 31, "dtype": "float32", "blocksize": 32,
               "crs": "EPSG:32611", "transform": Affine(30, 0, 500000, 0, -30, 3760000)}  # fmt: skip
    (folder / "lr").mkdir()
    with rasterio.open(folder / "lr" / "cog.tif", "w", **profile) as out:
        out.write(cube.astype(np.float32))
        out.update_tags(SENSOR="EnMAP-like")
    local = runner.invoke(
        app, ["infer", str(folder / "lr"), "-o", str(folder / "local"), *ARGS, "--memory-budget", "2M"]
    )
    assert local.exit_code == 0, local.output
    return folder / "lr", folder / "local"


def test_a_cog_over_http_is_read_by_range(cog: tuple[Path, Path], tmp_path: Path) -> None:
    lr, local = cog
    size = (lr / "cog.tif").stat().st_size
    before = {k: v for k, v in os.environ.items() if k.startswith(("GDAL_", "CPL_"))}
    with http_server(lr) as (base, log):
        result = runner.invoke(
            app, ["infer", f"{base}cog.tif", "-o", str(tmp_path / "sr"), *ARGS, "--memory-budget", "2M"]
        )
    assert result.exit_code == 0, result.output
    (record,) = manifest((tmp_path / "sr" / "manifest.jsonl").read_text())
    assert record["mode"] == "streamed"
    assert record["input"] == f"{base}cog.tif"
    assert record["input_files"][0]["etag"]  # its fingerprint is the server's, not a hash of bytes never all read
    gets = [request for request in log.requests if request[0] == "GET"]
    assert gets
    assert all(request[2] is not None for request in gets)  # every read a range: never downloaded whole
    assert log.sent < size  # the overviews are never read (measured: 1.24 MB of 1.60 MB)
    added = {k: v for k, v in os.environ.items() if k.startswith(("GDAL_", "CPL_")) and k not in before}
    assert "GDAL_DISABLE_READDIR_ON_OPEN" not in added  # it would hide local files' sidecars from GDAL afterwards
    assert np.array_equal(read_scene(tmp_path / "sr" / "cog.tif").cube, read_scene(local / "cog.tif").cube)
    import rasterio

    with rasterio.open(tmp_path / "sr" / "cog.tif") as written:
        assert written.tags()["SENSOR"] == "EnMAP-like"  # the source's tags, copied from the store
        assert json.loads(written.tags()["DUALSR_SCENE"])["source"] == f"{base}cog.tif"


def test_a_cog_in_a_bucket_is_read_by_range(s3: Any, cog: tuple[Path, Path], tmp_path: Path) -> None:
    lr, local = cog
    source = upload(s3, lr, "cogs")
    out = f"s3://{s3.bucket}/sr/"
    result = runner.invoke(app, ["infer", source, "-o", out, *ARGS, "--memory-budget", "2M"])
    assert result.exit_code == 0, result.output
    assert "read by range" in " ".join(result.output.split())
    same_output(s3, f"{s3.bucket}/sr/cog.tif", local / "cog.tif", tmp_path)
    again = runner.invoke(app, ["infer", source, "-o", out, *ARGS, "--memory-budget", "2M", "--resume"])
    assert "0 done, 0 failed, 1 skipped" in " ".join(again.output.split())


def test_an_emit_granule_in_a_bucket_is_read_by_range_into_its_structure(s3: Any, tmp_path: Path) -> None:
    """An EMIT L2A granule written with netCDF4 as the EMIT SDS writes it, in a bucket: read by range (h5py over a
    block-cached object) and written back in its structure, which xarray (h5netcdf) and netCDF4 open as they open
    the local run's."""
    netcdf4 = pytest.importorskip("netCDF4")
    xarray = pytest.importorskip("xarray")
    from tests.interop.producers import write_emit_granule

    lr = tmp_path / "granules"
    lr.mkdir()
    name = "EMIT_L2A_RFL_001_20230401T185249_2309112_002.nc"
    write_emit_granule(lr / name)
    local = runner.invoke(app, ["infer", str(lr), "-o", str(tmp_path / "local"), "--scale", "2"])
    assert local.exit_code == 0, local.output
    source = upload(s3, lr, "emit")
    remote = runner.invoke(app, ["infer", source, "-o", str(tmp_path / "remote"), "--scale", "2"])
    assert remote.exit_code == 0, remote.output
    assert "1 scene(s) read by range" in " ".join(remote.output.split())
    here, there = tmp_path / "local" / name, tmp_path / "remote" / name
    with xarray.open_dataset(here, engine="h5netcdf") as a, xarray.open_dataset(there, engine="h5netcdf") as b:
        assert np.array_equal(a["reflectance"].values, b["reflectance"].values, equal_nan=True)
        assert set(b.attrs) == set(a.attrs)
        for key in set(a.attrs) - {"dualsr_scene"}:  # the product's global attributes, as the local run keeps them
            assert np.array_equal(np.asarray(b.attrs[key]), np.asarray(a.attrs[key])), key
    for group in ("sensor_band_parameters", "location"):
        with (
            xarray.open_dataset(here, group=group, engine="h5netcdf") as a,
            xarray.open_dataset(there, group=group, engine="h5netcdf") as b,
        ):
            assert a.identical(b)
    with netcdf4.Dataset(here) as a, netcdf4.Dataset(there) as b:
        assert set(b.groups) == set(a.groups)
        assert {k: len(v) for k, v in b.dimensions.items()} == {k: len(v) for k, v in a.dimensions.items()}


def test_a_local_list_naming_a_gdal_virtual_path_reads_nothing_remote(tmp_path: Path) -> None:
    """A list entry (or link) naming ``/vsicurl/…`` is refused as a scene, even under ``--root /``: remote objects
    are read only where the archive is given as a URL."""
    served = tmp_path / "served"
    served.mkdir()
    write_scene(served / "x.tif", lr_scene(0, 16, 31, scale=2))
    with http_server(served) as (base, log):
        (tmp_path / "list.txt").write_text(f"/vsicurl/{base}x.tif\n")
        result = runner.invoke(
            app, ["infer", str(tmp_path / "list.txt"), "-o", str(tmp_path / "sr"), *ARGS, "--root", "/"]
        )
    assert result.exit_code == 1, result.output
    (record,) = manifest((tmp_path / "sr" / "manifest.jsonl").read_text())
    assert record["status"] == "failed"
    assert "a GDAL virtual path" in record["error"]
    assert log.requests == []


def test_a_manifest_claiming_outputs_elsewhere_is_not_believed(s3: Any, archive: tuple[Path, Path]) -> None:
    """A manifest is a claim too: a record whose uploaded outputs lie outside the output prefix (a copy elsewhere,
    the same bytes and ETag) does not make --resume skip its scene."""
    lr, _ = archive
    source = upload(s3, lr, "granules")
    out = f"s3://{s3.bucket}/sr/"
    assert runner.invoke(app, ["infer", source, "-o", out, *ARGS]).exit_code == 0
    key = f"{s3.bucket}/sr/manifest.jsonl"
    records = manifest(s3.cat(key).decode())
    s3.copy(f"{s3.bucket}/sr/g0.h5", f"{s3.bucket}/elsewhere/g0.h5")
    for record in records:
        if record["name"] == "g0":
            for item in record["output_objects"]:
                item["url"] = item["url"].replace("/sr/", "/elsewhere/")
    s3.pipe(key, "".join(json.dumps(r) + "\n" for r in records).encode())
    s3.rm(f"{s3.bucket}/sr/g0.h5")
    resumed = runner.invoke(app, ["infer", source, "-o", out, *ARGS, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "1 done, 0 failed, 5 skipped" in " ".join(resumed.output.split())
    assert s3.exists(f"{s3.bucket}/sr/g0.h5")


def test_gdal_settings_follow_the_endpoint_of_each_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """GDAL's S3 endpoint is made from AWS_ENDPOINT_URL at each run: one this package set earlier (here, or in the
    parent of a Ray worker) is replaced or removed, never left pointing at a server of the past; a user's is kept."""
    from dualsr_deploy.data.remote_ranges import GDAL_SET, apply_gdal_environment

    for name in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING", "AWS_ENDPOINT_URL_S3", GDAL_SET):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111")
    apply_gdal_environment()
    assert os.environ["AWS_S3_ENDPOINT"] == "127.0.0.1:1111"
    assert os.environ["AWS_HTTPS"] == "NO"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://store.example.org")
    apply_gdal_environment()  # the next run, another endpoint
    assert os.environ["AWS_S3_ENDPOINT"] == "store.example.org"
    assert os.environ["AWS_HTTPS"] == "YES"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    apply_gdal_environment()  # no endpoint any more: AWS itself
    assert "AWS_S3_ENDPOINT" not in os.environ
    monkeypatch.setenv("AWS_S3_ENDPOINT", "mine.example.org")  # the user's own
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2222")
    apply_gdal_environment()
    assert os.environ["AWS_S3_ENDPOINT"] == "mine.example.org"


def test_opens_of_s3_objects_share_one_client_per_environment(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scene's ~11 opens of its object make one botocore client (~86 ms each), not one each; other credentials or
    another endpoint in the environment make another, so an open never signs with stale ones."""
    import botocore.session

    from dualsr_deploy.data.remote_file import _s3_client, range_file

    made: list[str | None] = []
    create = botocore.session.Session.create_client

    def counted(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        made.append(kwargs.get("endpoint_url"))
        return create(self, service, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", counted)
    _s3_client.cache_clear()
    s3.pipe(f"{s3.bucket}/o.bin", bytes(range(256)))
    for _ in range(3):
        assert range_file(f"s3://{s3.bucket}/o.bin").read(4) == bytes(range(4))
    assert len(made) == 1
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another")  # the test server takes any secret: the client is counted
    assert range_file(f"s3://{s3.bucket}/o.bin").read(4) == bytes(range(4))
    assert len(made) == 2


def test_an_s3_object_replaced_while_it_is_read_by_range_fails_the_read(s3: Any) -> None:
    """Every range of one read is of one version (IfMatch on the ETag): never bytes of two objects mixed."""
    from dualsr_deploy.data.remote_file import range_file

    s3.pipe(f"{s3.bucket}/o.bin", bytes(range(256)) * 100)
    file = range_file(f"s3://{s3.bucket}/o.bin")
    file.blocks.block_size = 1000  # small blocks, so that the second read is another request
    assert file.read(5) == bytes(range(5))
    s3.pipe(f"{s3.bucket}/o.bin", bytes(range(255, -1, -1)) * 100)
    file.seek(20_000)
    with pytest.raises(RemoteError, match="changed while it was being read"):
        file.read(3)
