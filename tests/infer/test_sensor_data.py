"""``dualsr infer`` on real sensor products (``../shared/data/products/``, read in place): no flag needed, output in
the input's format, units and dtype, bad bands untouched, no-data exactly where the nearest-upsampled input mask
is, metadata kept; and the refusals of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data.archive import open_archive
from dualsr_deploy.data.formats import open_scene
from dualsr_deploy.data.validity import nearest_up
from tests.conftest import SHARED
from tests.infer.test_run import manifest

runner = CliRunner()
PRODUCTS = SHARED / "data" / "products"
needs_products = pytest.mark.skipif(not PRODUCTS.is_dir(), reason="../shared/data/products not found")


def output_of(out: Path, name: str) -> Path:
    (found,) = [p for p in out.glob(f"{name}.*") if p.suffix in (".hdr", ".tif", ".h5")]
    return found


@needs_products
@pytest.mark.parametrize("scale", [2, 4])
def test_products_run_with_no_flag_and_come_back_as_they_came(tmp_path: Path, scale: int) -> None:
    out = tmp_path / "sr"
    args = ["infer", str(PRODUCTS), "-o", str(out), "--scale", str(scale), "--stage", "coarse"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for entry in open_archive(PRODUCTS).entries:
        target = output_of(out, entry.name)
        assert target.suffix == entry.path.suffix  # ENVI stays ENVI, GeoTIFF stays GeoTIFF
        with open_scene(entry.path) as reader:
            raw_in, scene_in = reader.read_raw(), reader.load()
        with open_scene(target) as reader:
            raw_out, scene_out = reader.read_raw(), reader.load()
        assert raw_out.dtype == raw_in.dtype
        assert raw_out.shape == (raw_in.shape[0], scale * raw_in.shape[1], scale * raw_in.shape[2])
        bad = list(scene_in.meta.bad_bands)
        np.testing.assert_array_equal(raw_out[bad], nearest_up(raw_in[bad], scale))  # bad bands untouched
        good = scene_in.good
        # the same units: the SR means stay within 2 % of the input's (reflectance ×10⁴, radiance, reflectance)
        assert abs(raw_out[good].mean() / raw_in[good].mean() - 1) < 0.02
        for field in ("wavelengths", "fwhm", "nodata", "bad_bands", "band_names", "band_gains", "band_offsets"):
            assert getattr(scene_out.meta, field) == getattr(scene_in.meta, field), field
        if scene_in.meta.georef is not None:
            a, _, c, _, e, f = scene_in.meta.georef.transform
            assert scene_out.meta.georef is not None
            np.testing.assert_allclose(scene_out.meta.georef.transform, (a / scale, 0, c, 0, e / scale, f))


@needs_products
def test_a_no_data_edge_is_filled_for_the_network_and_restored_exactly(tmp_path: Path) -> None:
    """The EMIT L2A sample with its left 3 columns set to its declared no-data (−9999), as at a swath edge."""
    archive = tmp_path / "emit"
    shutil.copytree(PRODUCTS / "emit_l2a_envi", archive)
    (data,) = [p for p in archive.iterdir() if p.suffix != ".hdr"]
    data.chmod(0o644)
    with open_scene(data) as reader:
        raw = reader.read_raw()
    c, h, w = raw.shape
    cube = np.memmap(data, dtype=np.float32, mode="r+", shape=(h, c, w))  # BIL
    cube[:, :, :3] = -9999
    cube.flush()
    del cube
    out = tmp_path / "sr"
    result = runner.invoke(app, ["infer", str(archive), "-o", str(out), "--scale", "2", "--stage", "coarse"])
    assert result.exit_code == 0, result.output
    (record,) = manifest(out)
    assert "filled from their nearest valid pixel" in " ".join(map(str, record["notes"]))  # type: ignore[call-overload]
    with open_scene(output_of(out, data.stem)) as reader:
        sr = reader.read_raw()
        bad = list(reader.load().meta.bad_bands)
    good = [b for b in range(c) if b not in bad]
    invalid = np.zeros((h, w), dtype=bool)
    invalid[:, :3] = True
    expected = nearest_up(invalid, 2)
    assert np.all(sr[good][:, expected] == -9999)
    assert np.all(sr[good][:, ~expected] != -9999)
    assert np.isfinite(sr).all()
    assert sr[good][:, ~expected].max() < 1.5  # reflectance, with no ringing blown up by the fill


def npy_archive(folder: Path, **cubes: np.ndarray) -> list[str]:
    """``.npy`` scenes in ``folder``; the arguments of ``dualsr infer`` ×2 coarse over it into ``folder/../sr``."""
    folder.mkdir()
    for name, cube in cubes.items():
        np.save(folder / f"{name}.npy", cube)
    return ["infer", str(folder), "-o", str(folder.parent / "sr"), "--scale", "2", "--stage", "coarse"]


def test_refusals_name_the_scene_and_the_run_goes_on(tmp_path: Path) -> None:
    good = np.random.default_rng(0).uniform(0.1, 0.9, (6, 8, 8)).astype(np.float32)
    args = npy_archive(tmp_path / "lr", fine=good, empty=np.full((6, 8, 8), np.nan, dtype=np.float32))
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    records = {r["name"]: r for r in manifest(tmp_path / "sr")}
    assert records["fine"]["status"] == "ok"
    assert records["empty"]["status"] == "failed"
    assert "empty.npy: no band holds a valid value" in str(records["empty"]["error"])
    malformed = runner.invoke(app, [*args[:3], str(tmp_path / "x"), *args[4:], "--bad-bands", "3,foo"])
    assert malformed.exit_code == 2
    assert "--bad-bands '3,foo': cannot read 'foo'" in malformed.output
    beyond = runner.invoke(app, [*args[:3], str(tmp_path / "y"), *args[4:], "--bad-bands", "2,40"])
    assert beyond.exit_code == 1
    failed = {r["name"]: r for r in manifest(tmp_path / "y")}
    assert "names band 40, the scene has 6" in str(failed["fine"]["error"])


def test_a_scene_that_cannot_fit_the_free_space_fails_with_the_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    small, huge = (rng.uniform(0.1, 0.9, (6, n, n)).astype(np.float32) for n in (8, 64))
    args = npy_archive(tmp_path / "lr", small=small, huge=huge)
    disk = shutil.disk_usage(tmp_path)
    # 30 kB free: the ×2 output of the 8×8 scene (6·16·16·4 B = 6 kB) fits, the 64×64 one (393 kB) does not
    monkeypatch.setattr(
        "dualsr_deploy.infer.plan.shutil.disk_usage", lambda _path: type(disk)(disk.total, disk.used, 30_000)
    )
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    records = {r["name"]: r for r in manifest(tmp_path / "sr")}
    assert records["small"]["status"] == "ok"
    assert records["huge"]["status"] == "failed"
    assert "needs ~384.0 KiB on disk (output)" in str(records["huge"]["error"])
    assert "has 29.3 KiB free" in str(records["huge"]["error"])


def test_quality_layer_marks_invalid_filled_and_clean_pixels(tmp_path: Path) -> None:
    from dualsr_deploy.infer.quality import quality_layer

    valid = np.ones((40, 40), dtype=bool)
    valid[:, :4] = False
    layer = quality_layer(valid, (40, 40), 2, radius=16)
    assert layer.shape == (80, 80)
    assert (layer[:, :8] == 0).all()  # no-data, nearest-upsampled
    assert (layer[:, 8 : 2 * (4 + 16)] == 1).all()  # within the receptive radius of the edge
    assert (layer[:, 2 * (4 + 16) :] == 2).all()
    assert (quality_layer(None, (3, 3), 4, 16) == 2).all()

    archive = tmp_path / "lr"
    archive.mkdir()
    cube = np.random.default_rng(2).uniform(0.1, 0.9, (6, 40, 40)).astype(np.float32)
    cube[:, :, :4] = np.nan
    np.save(archive / "edge.npy", cube)
    args = ["infer", str(archive), "-o", str(tmp_path / "sr"), "--scale", "2", "--stage", "coarse", "--qa"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    (record,) = manifest(tmp_path / "sr")
    assert record["qa"] == {"invalid": 80 * 8, "filled": 80 * 32, "clean": 80 * 40}
    with open_scene(tmp_path / "sr" / "edge_qa.npy") as reader:
        stored = reader.read_raw()
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(stored[0], layer)
    with open_scene(tmp_path / "sr" / "edge.npy") as reader:
        sr = reader.read_raw()
    assert np.isnan(sr[:, :, :8]).all()  # a float input without a declared no-data value: NaN
    assert np.isfinite(sr[:, :, 8:]).all()


@pytest.mark.parametrize("stage", ["coarse", "dual"])
def test_a_streamed_scene_with_no_data_and_bad_bands_equals_the_in_memory_one(tmp_path: Path, stage: str) -> None:
    """Reflectance ×10⁴ in int16 with a declared no-data value (−32768), a no-data corner and a bad band: streamed
    in strips under a tiny memory budget, the output equals the in-memory run's (the fill's margin makes each
    strip's fill equal the whole scene's where it reaches a valid output), bad band and no-data exact."""
    from dualsr_deploy.data.formats import write_scene
    from dualsr_deploy.data.scene import Scene, SceneMeta
    from dualsr_deploy.infer import InferOptions, run_archive
    from tests.infer.conftest import lr_scene

    base = lr_scene(7, 40, 12)
    raw = np.rint(base.cube * 10000).astype(np.int16)
    raw[:, :9, :7] = -32768
    raw[5] = -1
    meta = SceneMeta("made", "npy", dtype="int16", nodata=-32768.0, bad_bands=(5,))
    valid = np.ones((40, 40), dtype=bool)
    valid[:9, :7] = False
    cube = np.where(valid, raw, 0).astype(np.float32) / 10000
    cube[5] = 0
    scene = Scene("made", cube, meta.replace(scale_factor=10000.0), valid=valid, passthrough=raw[[5]])
    archive = tmp_path / "lr"
    write_scene(archive / "refl.h5", scene, units="source")
    outputs, records = {}, {}
    for name, budget in (("memory", None), ("streamed", 200_000)):
        options = InferOptions(stage=stage, tile=16, memory_budget=budget, qa=True)
        report = run_archive(archive, tmp_path / name, options)
        assert report.exit_code == 0, report.records
        assert report.records[0].mode == name
        records[name] = report.records[0]
        with open_scene(tmp_path / name / "refl.h5") as reader:
            outputs[name] = reader.read_raw()
        with open_scene(tmp_path / name / "refl_qa.h5") as reader:
            outputs[f"{name} qa"] = reader.read_raw()
        assert report.records[0].qa is not None
    np.testing.assert_array_equal(outputs["memory qa"], outputs["streamed qa"])
    # one record builder: the same notes and quality counts, held whole or streamed
    assert records["memory"].notes == records["streamed"].notes
    assert "good bands super-resolved in 2 segment(s): 0-4, 6-11" in records["memory"].notes
    assert f"{9 * 7} invalid LR pixels filled from their nearest valid pixel for the network" in records["memory"].notes
    assert records["memory"].qa == records["streamed"].qa
    memory, streamed = outputs["memory"], outputs["streamed"]
    assert streamed.dtype == np.int16
    np.testing.assert_array_equal(streamed[5], nearest_up(raw[5], 4))
    assert np.all(streamed[:, : 4 * 9, : 4 * 7][[b for b in range(12) if b != 5]] == -32768)
    assert np.abs(memory.astype(np.int32) - streamed.astype(np.int32)).max() <= 1  # int16 rounding of float32 sums


@needs_products
def test_a_mixed_folder_lists_every_file_it_does_not_read(tmp_path: Path) -> None:
    """An EMIT NetCDF granule, EnMAP GeoTIFF, AVIRIS-NG ENVI with its _loc/_obs sidecars, a PDF and a CAVE folder:
    every scene is planned, every other file listed with its reason, in data info and in the run."""
    import h5py

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    with h5py.File(mixed / "EMIT_L2A_RFL_001_20230101T000000_2300100_001.nc", "w") as handle:
        handle.create_dataset("reflectance", data=np.full((12, 12, 6), 0.2, np.float32))
        handle.create_group("sensor_band_parameters").create_dataset("wavelengths", data=np.arange(6) * 10.0 + 400)
    shutil.copy(PRODUCTS / "enmap_l2a_tiles" / "enmap_potsdam_tile_64_0.tif", mixed)
    for name in ("ang20170323t202244_rdn_7000-7010", "ang20170323t202244_rdn_7000-7010.hdr"):
        shutil.copy(PRODUCTS / "avirisng_l1b_envi" / name, mixed)
    for aux in ("loc", "obs"):
        stem = f"ang20170323t202244_{aux}_7000-7010"
        (mixed / stem).write_bytes(np.zeros((10, 3, 10), "<f8").tobytes())
        (mixed / f"{stem}.hdr").write_text(
            "ENVI\nsamples = 10\nlines = 10\nbands = 3\nheader offset = 0\nfile type = ENVI Standard\n"
            "data type = 5\ninterleave = bil\nbyte order = 0\n"
        )
    (mixed / "handbook.pdf").write_bytes(b"%PDF-1.4\n")
    cave = SHARED / "data" / "cave" / "beads_ms"
    if cave.is_dir():
        (mixed / "beads_ms").symlink_to(cave)
    if cave.is_dir():  # a link out of the archive folder is followed only under --root, and listed otherwise
        alone = runner.invoke(app, ["data", "info", str(mixed)], env={"COLUMNS": "200"})
        assert "beads_ms: symbolic link out of the archive root" in " ".join(alone.output.split())
    widen = ["--root", "/"]
    info = runner.invoke(app, ["data", "info", str(mixed), *widen], env={"COLUMNS": "200"})
    assert info.exit_code == 0, info.output
    assert "│ emit " in next(line for line in info.output.splitlines() if "EMIT_L2A_RFL" in line)
    reasons = {
        "_loc_7000-7010.hdr": "auxiliary product",
        "_obs_7000-7010.hdr": "auxiliary product",
        "handbook.pdf": "unknown format (.pdf)",
        "ang20170323t202244_rdn_7000-7010: ": "data of the ENVI scene",
    }
    for name, reason in reasons.items():
        line = next((line for line in info.output.splitlines() if name in line), "")
        assert reason in line, (name, info.output)
    plan = runner.invoke(
        app, ["infer", str(mixed), "-o", str(tmp_path / "sr"), "--dry-run", *widen], env={"COLUMNS": "200"}
    )
    assert plan.exit_code == 0, plan.output
    planned = [line for line in plan.output.splitlines() if "│ run" in line]
    assert len(planned) == (4 if cave.is_dir() else 3)  # EMIT, EnMAP, AVIRIS-NG (and CAVE)
    assert "not read as scenes" in plan.output
    assert "handbook.pdf: unknown format (.pdf)" in plan.output
