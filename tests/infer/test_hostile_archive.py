"""A run over an archive that lies: hostile files beside good scenes, metadata that ends the old reader thread,
outputs that would overwrite each other, headers that inject keys, inputs changed behind --resume, eval pairs that
are not pairs, a Ray cluster on every interface. Every good scene ends ok, every hostile one failed with a one-line
reason, no byte from outside in any output, and a run that lost anything exits non-zero."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data import write_scene
from dualsr_deploy.data.formats import open_scene
from dualsr_deploy.data.scene import Scene, SceneMeta
from tests.data import hostile

runner = CliRunner()


def infer(archive: Path, out: Path, *extra: str) -> tuple[int, str]:
    args = ["infer", str(archive), "-o", str(out), "--scale", "2", "--stage", "coarse", "--tile", "16", *extra]
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    return result.exit_code, result.output


def records(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]


def good_scene(folder: Path, name: str, seed: int = 0, bands: int = 8, suffix: str = ".h5") -> Path:
    cube = (0.2 + 0.6 * np.random.default_rng(seed).random((bands, 12, 12))).astype(np.float32)
    path = folder / f"{name}{suffix}"
    write_scene(path, Scene(name, cube, SceneMeta("made", "hdf5")))
    return path


def test_hostile_files_beside_good_scenes_fail_alone_and_leak_nothing(tmp_path: Path) -> None:
    archive, outside, out = tmp_path / "archive", tmp_path / "outside", tmp_path / "sr"
    archive.mkdir()
    good = [good_scene(archive, f"good{i}", seed=i) for i in range(3)]
    hostile_names = list(hostile.READS_OUTSIDE)
    for build in hostile.READS_OUTSIDE.values():
        build(archive, outside)
    header = archive / "lying.hdr"  # an 8-entry bbl for 6 bands: used to kill the reader thread, exit 0
    header.write_text(
        "ENVI\nsamples = 12\nlines = 12\nbands = 6\nheader offset = 0\nfile type = ENVI Standard\ndata type = 4\n"
        "interleave = bsq\nbyte order = 0\nbbl = {1, 1, 1, 1, 1, 1, 0, 0}\n"
    )
    np.ones((6, 12, 12), "<f4").tofile(archive / "lying.img")
    hostile.fifo(archive)
    code, said = infer(archive, out, "--format", "npy")
    assert code == 1, said
    final = {str(r["name"]): r for r in records(out)}
    assert {path.stem for path in good} <= {n for n, r in final.items() if r["status"] == "ok"}, said
    for name in [*hostile_names, "lying"]:
        assert final[name]["status"] == "failed", final[name]
        assert "\n" not in str(final[name]["error"])
    assert "bbl has 8 values, the cube 6 bands" in str(final["lying"]["error"])
    assert "scene.h5: not a regular file: a FIFO" in " ".join(said.split())
    assert not hostile.holds_secret(out), "bytes from outside the archive reached an output"
    assert "3 done" in said


def test_a_reader_thread_that_dies_ends_the_run_non_zero_with_every_scene_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dualsr_deploy.infer import pipeline
    from dualsr_deploy.infer.executors import local

    archive, out = tmp_path / "archive", tmp_path / "sr"
    archive.mkdir()
    for index in range(3):
        good_scene(archive, f"s{index}", seed=index)
    real = pipeline.load_scene
    calls = []

    def dies_on_the_second(*args: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise SystemError("the thread itself breaks")  # past load_scene's own handling, as a bug would
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(local, "load_scene", dies_on_the_second)
    code, said = infer(archive, out)
    assert code == 1, said
    assert "run broken" in said
    assert "the reader thread stopped (SystemError" in " ".join(said.split())
    status = {str(r["name"]): r["status"] for r in records(out)}
    assert status == {"s0": "ok", "s1": "failed", "s2": "failed"}


def test_outputs_that_would_overwrite_each_other_fail_at_plan_time(tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "sr"
    archive.mkdir()
    good_scene(archive, "a", suffix=".npy")
    good_scene(archive, "a_qa", seed=1, suffix=".npy")
    code, said = infer(archive, out, "--qa")
    assert code == 1, said
    final = {str(r["name"]): r for r in records(out)}
    assert final["a"]["status"] == "ok"
    assert final["a_qa"]["status"] == "failed"
    assert "scene 'a' writes a file of this name already" in str(final["a_qa"]["error"])
    with open_scene(out / "a_qa.npy") as reader:
        assert reader.dtype == np.uint8  # a's QA layer, not overwritten by a_qa's output


def test_multi_scene_hdf5_keys_with_dot_dot_are_refused(tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "sr"
    archive.mkdir()
    rng = np.random.default_rng(0)
    with h5py.File(archive / "many.h5", "w") as handle:
        handle.create_group("g")
        handle["x"] = rng.random((6, 12, 12)).astype(np.float32)
        handle["g"]["..x"] = rng.random((6, 12, 12)).astype(np.float32)
        handle["g"].create_group("..")["x"] = rng.random((6, 12, 12)).astype(np.float32)
    code, _said = infer(archive / "many.h5", out)
    final = {str(r["name"]): r for r in records(out)}
    assert final["many/x"]["status"] == "ok"
    assert final["many/g/..x"]["status"] == "ok"  # a name part that only starts with dots is a name
    assert final["many/g/../x"]["status"] == "failed"
    assert "'..' part" in str(final["many/g/../x"]["error"])
    assert code == 1


def test_a_band_description_cannot_inject_envi_header_keys(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    archive, out = tmp_path / "archive", tmp_path / "sr"
    archive.mkdir()
    profile = {"driver": "GTiff", "width": 12, "height": 12, "count": 6, "dtype": "uint16", "crs": "EPSG:32611"}
    with rasterio.open(
        archive / "scene.tif", "w", transform=from_origin(500000, 4000000, 30, 30), **profile
    ) as dataset:
        dataset.write((np.random.default_rng(0).random((6, 12, 12)) * 5000 + 1000).astype(np.uint16))
        for band in range(1, 7):
            dataset.set_band_description(band, f"b{band}}}\nbyte order = 1\nheader offset = 64\n{{")
    code, said = infer(archive, out, "--format", "envi")
    assert code == 0, said
    header = (out / "scene.hdr").read_text()
    keys = [line.split("=")[0].strip() for line in header.splitlines() if "=" in line and not line.startswith(" ")]
    assert keys.count("byte order") == 1, header
    assert keys.count("header offset") == 1, header
    assert re.search(r"^header offset = 0$", header, re.M)
    assert re.search(r"^byte order = 0$", header, re.M)
    with open_scene(out / "scene.hdr") as reader:  # dualsr reads its own output back
        assert reader.shape == (6, 24, 24)
        assert reader.band_names is not None
        assert reader.band_names[0].startswith("b1)")
    with rasterio.open(out / "scene.img") as dataset:  # GDAL reads the values, not ±1e38
        values = dataset.read()
    assert 0 < values.max() < 10000


def test_resume_redoes_a_scene_whose_envi_data_file_was_replaced(tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "sr"
    archive.mkdir()
    header = archive / "scene.hdr"
    header.write_text(
        "ENVI\nsamples = 12\nlines = 12\nbands = 6\nheader offset = 0\nfile type = ENVI Standard\ndata type = 4\n"
        "interleave = bsq\nbyte order = 0\n"
    )
    rng = np.random.default_rng(0)
    (0.2 + 0.5 * rng.random((6, 12, 12))).astype("<f4").tofile(archive / "scene.img")
    assert infer(archive, out)[0] == 0
    first = records(out)[0]
    files = first["input_files"]
    assert isinstance(files, list)
    assert sorted(item["path"] for item in files) == ["scene.hdr", "scene.img"]
    (0.2 + 0.5 * rng.random((6, 12, 12))).astype("<f4").tofile(archive / "scene.img")  # the header is unchanged
    code, said = infer(archive, out, "--resume")
    assert code == 0, said
    assert len(records(out)) == 2, "the replaced data file was skipped as done before"


def test_resume_keeps_the_users_own_hidden_tmp_files_and_long_names_write(tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "sr"
    archive.mkdir()
    long_name = "granule_" + "x" * 232  # 240 bytes: a temporary name around it would pass the 255-byte limit
    good_scene(archive, long_name)
    assert infer(archive, out)[0] == 0
    mine = out / ".notes.tmp"
    mine.write_text("the user's own")
    (out / f".{long_name[:20]}.dualsr-abc.tmp").write_text("a killed run's")
    code, said = infer(archive, out, "--resume")
    assert code == 0, said
    assert mine.read_text() == "the user's own"
    assert not list(out.glob(".*.dualsr-*.tmp"))
    assert (out / f"{long_name}.h5").is_file()


def test_a_flaash_int16_reflectance_file_round_trips_in_its_own_units(tmp_path: Path) -> None:
    """int16 reflectance × 10000 with ``reflectance scale factor = 10000`` (FLAASH, many L2A producers): output DN in
    the input's range; Spectral and GDAL read the same factor from the output header."""
    archive, out = tmp_path / "archive", tmp_path / "sr"
    archive.mkdir()
    rows, cols, bands = 12, 14, 8
    y, x = np.mgrid[0:rows, 0:cols]
    refl = np.stack([0.25 + 0.2 * np.sin(x / 4 + b / 3) * np.cos(y / 5) + 0.02 * b for b in range(bands)], axis=1)
    dn = np.round(refl * 10000).astype("<i2")  # BIL: (lines, bands, samples)
    dn.tofile(archive / "flaash.img")
    wavelengths = ", ".join(f"{400 + 60 * b:.2f}" for b in range(bands))
    (archive / "flaash.hdr").write_text(
        "ENVI\ndescription = {\n  FLAASH Atmospheric Correction Result [Mon Jan 01 00:00:00 2024]}\n"
        f"samples = {cols}\nlines   = {rows}\nbands   = {bands}\nheader offset = 0\nfile type = ENVI Standard\n"
        "data type = 2\ninterleave = bil\nsensor type = Unknown\nbyte order = 0\n"
        f"reflectance scale factor = 10000.000000\nwavelength units = Nanometers\nwavelength = {{\n {wavelengths}}}\n"
    )
    code, said = infer(archive, out)
    assert code == 0, said
    from spectral.io import envi

    image = envi.open(str(out / "flaash.hdr"))
    assert image.scale_factor == 10000.0
    image.scale_factor = 1.0
    values = np.asarray(image.load())
    assert np.dtype(image.dtype) == np.int16
    assert dn.min() - 300 <= values.min(), values.min()
    assert values.max() <= dn.max() + 300, values.max()
    assert values.max() > 1000  # DN, not DN divided twice (0-24)
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(out / "flaash.img") as dataset:
        assert float(dataset.tags(ns="ENVI")["reflectance_scale_factor"]) == 10000.0


def test_eval_pairs_by_relative_name_and_refuses_ambiguous_pairs(tmp_path: Path) -> None:
    from dualsr_deploy.data.synth import synthesize
    from dualsr_deploy.evaluation import EvalOptions, evaluate_archive

    hr, lr = tmp_path / "hr", tmp_path / "lr"
    for sub, seed in (("a", 0), ("b", 1)):
        write_scene(hr / sub / "scene.h5", synthesize(seed, size=32, bands=8))
    import torch

    from dualsr_deploy.data import read_scene
    from dualsr_deploy.data.degrade import degrade

    for sub in ("a", "b"):
        scene = read_scene(hr / sub / "scene.h5")
        low = degrade(torch.from_numpy(scene.cube), 4).numpy()
        write_scene(lr / sub / "scene.h5", Scene("scene", low, scene.meta))
    (lr / "a" / "scene.backup.npy").write_bytes(b"not a pair")  # once taken for a/scene by the flat glob
    report = evaluate_archive(hr, EvalOptions(lr=lr, tile=16, figures=False))
    assert sorted(s.name for s in report.scenes) == ["a/scene", "b/scene"]
    assert not report.failed
    scores = {s.name: s.scores["bicubic"]["psnr"] for s in report.scenes}
    assert scores["a/scene"] != scores["b/scene"]  # each against its own LR, not one LR file for both
    shutil.copy(lr / "b" / "scene.h5", lr / "b" / "scene.mat")
    report = evaluate_archive(hr, EvalOptions(lr=lr, tile=16, figures=False))
    failed = dict(report.failed)
    assert "2 LR scenes could pair with HR scene b/scene" in failed["b/scene"]


def test_reports_keep_scene_names_as_text(tmp_path: Path) -> None:
    from dualsr_deploy.evaluation.reports import csv_cell, md_text

    assert csv_cell('=HYPERLINK("http://x")').startswith("'=")
    assert csv_cell("-2+3").startswith("'-")
    assert csv_cell("scene") == "scene"
    assert "<img" not in md_text("<img src=x onerror=alert(1)>")
    assert "\\|" in md_text("a|b")


def test_a_config_with_bytes_that_are_not_utf8_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_bytes(b"scale = 2\n# caf\xe9\n")
    result = runner.invoke(app, ["infer", str(tmp_path), "-o", str(tmp_path / "o"), "--config", str(config)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "utf-8" in result.output.lower()


def test_a_local_ray_cluster_listens_on_loopback_only(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    from dualsr_deploy.infer.executors.ray_driver import ClusterSession
    from dualsr_deploy.infer.executors.ray_spec import ClusterSpec

    def listening() -> set[tuple[str, int, int | None]]:
        return {
            (c.laddr.ip, c.laddr.port, c.pid)
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }

    before = listening()
    with ClusterSession(ClusterSpec.parse("local:2")) as session:
        ray = session.ray

        @ray.remote  # type: ignore[untyped-decorator]
        def where() -> int:
            return 1

        assert ray.get(where.remote()) == 1
        opened = listening() - before
        if shutil.which("ss"):
            print(subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout)
    assert opened, "no socket seen: the check would pass whatever Ray listened on"
    exposed = {(ip, port) for ip, port, _ in opened if ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")}
    assert not exposed, f"Ray listened on other interfaces: {sorted(exposed)}"
