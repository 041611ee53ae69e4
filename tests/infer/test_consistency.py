"""Per-output consistency: the figures equal an independent NumPy computation, a streamed scene's equal its in-memory
run's, and they move the right way when the output does not go back to its input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.infer.consistency import scene_consistency
from dualsr_deploy.ops.imresize import imresize

runner = CliRunner()
RELATIVE = 1e-6  # float64 sums over strips against one NumPy pass: rounding only


def smooth(bands: int, rows: int, cols: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols]
    return np.stack([0.3 + 0.2 * np.sin(x / 7 + b / 3) * np.cos(y / 9 + b / 5) for b in range(bands)]).astype(
        np.float32
    )


def test_the_area_figures_equal_an_independent_numpy_computation() -> None:
    lr, s, factor = smooth(12, 150, 70), 2, 10000.0
    sr = imresize(torch.from_numpy(lr).double(), s).numpy().astype(np.float32)
    sr += np.random.default_rng(0).normal(0, 0.01, sr.shape).astype(np.float32)
    good = np.ones(12, dtype=bool)
    good[4] = False
    valid = np.ones((150, 70), dtype=bool)
    valid[30:40, 10:20] = False
    got = scene_consistency(lr, valid, good, sr, s, factor)
    assert got is not None
    area = sr.astype(np.float64).reshape(12, 150, 2, 70, 2).mean(axis=(2, 4))
    mine, theirs = area[good][:, valid], lr.astype(np.float64)[good][:, valid]
    span = theirs.max() - theirs.min()
    psnr = 10 * math.log10(span**2 / ((mine - theirs) ** 2).mean())
    cosine = (mine * theirs).sum(0) / (np.linalg.norm(mine, axis=0) * np.linalg.norm(theirs, axis=0))
    angles = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    assert got["area"]["psnr_db"] == pytest.approx(psnr, rel=RELATIVE, abs=1e-4)  # stored to 4 decimals
    assert got["area"]["mae"] == pytest.approx(np.abs(mine - theirs).mean() * factor, rel=1e-5)  # 6 digits
    assert got["area"]["sam_deg"] == pytest.approx(angles.mean(), abs=1e-4)
    assert got["area"]["sam_p99_deg"] == pytest.approx(np.percentile(angles, 99), abs=1e-3)  # float32 angles
    worst = np.flatnonzero(good)[int(np.argmax(((mine - theirs) ** 2).mean(axis=1)))]
    assert got["area"]["worst_band"] == worst
    up = imresize(torch.from_numpy(lr).double(), s).numpy()
    hr_valid = np.kron(valid, np.ones((2, 2), dtype=bool))
    detail = np.sqrt(((sr.astype(np.float64) - up)[good][:, hr_valid] ** 2).mean()) / span
    assert got["added_detail"] == pytest.approx(detail, rel=1e-5)


def test_a_shifted_or_foreign_output_goes_back_worse_than_the_true_one() -> None:
    lr, s = smooth(10, 64, 64), 2
    true = imresize(torch.from_numpy(lr).double(), s).numpy().astype(np.float32)
    good = np.ones(10, dtype=bool)
    base = scene_consistency(lr, None, good, true, s, 1.0)
    shifted = scene_consistency(lr, None, good, np.roll(true, 1, axis=2), s, 1.0)
    foreign = scene_consistency(lr, None, good, true[:, ::-1].copy(), s, 1.0)
    assert base is not None
    assert shifted is not None
    assert foreign is not None
    for op in ("bicubic", "area"):
        assert shifted[op]["psnr_db"] < base[op]["psnr_db"] - 5
        assert foreign[op]["psnr_db"] < base[op]["psnr_db"] - 10
        assert foreign[op]["sam_deg"] > base[op]["sam_deg"]


def test_a_streamed_scene_has_the_in_memory_figures_and_the_manifest_holds_them(tmp_path: Path) -> None:
    from dualsr_deploy.data import write_scene
    from dualsr_deploy.data.scene import Scene, SceneMeta

    cube = smooth(12, 40, 36)
    cube[:, 5:8, 3:9] = -1.0  # no-data
    meta = SceneMeta("made", "hdf5", nodata=-1.0, wavelengths=tuple(float(w) for w in np.linspace(400, 2400, 12)))
    write_scene(tmp_path / "lr" / "scene.h5", Scene("scene", cube, meta), units="normalised")
    figures = {}
    for name, budget in (("memory", "4G"), ("streamed", "10K")):
        out = tmp_path / name
        args = ["infer", str(tmp_path / "lr"), "-o", str(out), "--scale", "2", "--memory-budget", budget]
        result = runner.invoke(app, [*args, "--tile", "16"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        (record,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert record["mode"] == name
        figures[name] = record["consistency"]
    memory, streamed = figures["memory"], figures["streamed"]
    assert set(memory) == {"bicubic", "area", "added_detail", "bicubic_area_psnr_db"}
    for op in ("bicubic", "area"):
        for key in ("psnr_db", "mae", "sam_deg", "sam_p99_deg"):
            assert streamed[op][key] == pytest.approx(memory[op][key], rel=RELATIVE, abs=2e-4), (op, key)
        assert streamed[op]["worst_band"] == memory[op]["worst_band"]
    assert streamed["added_detail"] == pytest.approx(memory["added_detail"], rel=RELATIVE, abs=2e-6)
    assert memory["area"]["psnr_db"] > 30  # the real output goes back to its input


def test_an_output_that_does_not_go_back_to_its_input_is_marked_suspect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule (SUSPECT_MARGIN_DB below bicubic interpolation, block mean back to the LR grid) on outputs broken the
    ways that happen: shifted by one output pixel, another scene's, a wrong scale, wrong units; never on the true
    output."""
    from dualsr_deploy.infer.consistency import suspect

    lr, s = smooth(10, 48, 48), 2
    good = np.ones(10, dtype=bool)
    true = imresize(torch.from_numpy(lr).double(), s).numpy().astype(np.float32)
    other = imresize(torch.from_numpy(smooth(10, 48, 48)[:, ::-1, :].copy()).double(), s).numpy().astype(np.float32)
    wrong_scale = imresize(torch.from_numpy(lr).double(), 3).numpy().astype(np.float32)[:, :96, :96]
    assert suspect(scene_consistency(lr, None, good, true, s, 1.0)) is None
    for broken in (np.roll(true, 1, axis=2), other, wrong_scale, true * 10):
        reason = suspect(scene_consistency(lr, None, good, broken, s, 1.0))
        assert reason is not None
        assert "further from the input than bicubic interpolation" in reason
    # in a run: the record says so, and the summary counts it
    from dualsr_deploy.data import write_scene
    from dualsr_deploy.data.scene import Scene, SceneMeta
    from dualsr_deploy.infer import pipeline

    write_scene(tmp_path / "lr" / "a.h5", Scene("a", smooth(12, 24, 24), SceneMeta("made", "hdf5")))
    real = scene_consistency

    def shifted(lr: np.ndarray, valid: object, good: np.ndarray, sr: np.ndarray, *rest: object) -> object:
        return real(lr, valid, good, np.roll(sr, 1, axis=2), *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "scene_consistency", shifted)
    args = ["infer", str(tmp_path / "lr"), "-o", str(tmp_path / "sr"), "--scale", "2", "--tile", "16"]
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in (tmp_path / "sr" / "manifest.jsonl").read_text().splitlines()]
    assert "further from the input than bicubic interpolation" in record["suspect"]
    assert "1 done (1 suspect: see their notes)" in " ".join(result.output.split())


@pytest.mark.skipif(not (Path(__file__).parents[3] / "shared" / "data" / "products").is_dir(), reason="no products")
def test_the_shipped_product_samples_are_not_suspect(tmp_path: Path) -> None:
    products = Path(__file__).parents[3] / "shared" / "data" / "products"
    result = runner.invoke(app, ["infer", str(products), "-o", str(tmp_path), "--scale", "2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 9
    assert not [r["name"] for r in records if r.get("suspect")]
    assert all(r["consistency"]["area"]["psnr_db"] > r["consistency"]["bicubic_area_psnr_db"] for r in records)


def test_an_xarray_result_carries_the_figures_infer_records(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    from dualsr_deploy.data import write_scene
    from dualsr_deploy.data.scene import Scene, SceneMeta
    from dualsr_deploy.xarray import super_resolve

    cube = smooth(12, 24, 24)
    write_scene(tmp_path / "lr" / "a.h5", Scene("a", cube, SceneMeta("made", "hdf5")), units="normalised")
    args = ["infer", str(tmp_path / "lr"), "-o", str(tmp_path / "sr"), "--scale", "2", "--stage", "coarse"]
    result = runner.invoke(app, [*args, "--units", "normalised", "--weights", "cave"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in (tmp_path / "sr" / "manifest.jsonl").read_text().splitlines()]
    da = xr.DataArray(cube, dims=("band", "y", "x"), name="a")
    figures = json.loads(super_resolve(da, scale=2, stage="coarse", weights="cave").attrs["dualsr_consistency"])
    for op in ("bicubic", "area"):
        assert figures[op]["psnr_db"] == pytest.approx(record["consistency"][op]["psnr_db"], abs=1e-3)
        assert figures[op]["sam_deg"] == pytest.approx(record["consistency"][op]["sam_deg"], abs=1e-3)


@pytest.mark.parametrize("output_format", ["h5", "tif", "envi"])
def test_the_bicubic_reference_is_written_beside_each_output_in_its_format(tmp_path: Path, output_format: str) -> None:
    from dualsr_deploy.data import read_scene, write_scene
    from dualsr_deploy.data.scene import Scene, SceneMeta

    cube = smooth(12, 40, 36)
    meta = SceneMeta("made", "hdf5", wavelengths=tuple(float(w) for w in np.linspace(400, 900, 12)))
    write_scene(tmp_path / "lr" / "scene.h5", Scene("scene", cube, meta), units="normalised")
    made = {}
    for name, budget in (("memory", "4G"), ("streamed", "10K")):
        out = tmp_path / name
        args = ["infer", str(tmp_path / "lr"), "-o", str(out), "--scale", "2", "--memory-budget", budget, "--tile"]
        args += ["16", "--format", output_format, "--reference", "bicubic"]
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        suffix = {"h5": ".h5", "tif": ".tif", "envi": ".hdr"}[output_format]
        made[name] = read_scene(out / f"scene_bicubic{suffix}")
    expected = imresize(torch.from_numpy(cube).double(), 2).clamp(0, 1).float().numpy()
    for name, reference in made.items():
        np.testing.assert_allclose(reference.cube, expected, atol=2e-6, err_msg=name)  # MATLAB bicubic, float32
        assert reference.meta.wavelengths == meta.wavelengths
        assert reference.meta.attrs["stage"] == "bicubic interpolation (MATLAB imresize), the reference"
    np.testing.assert_array_equal(made["memory"].cube, made["streamed"].cube)


@pytest.mark.parametrize("output_format", ["h5", "npy", "mat", "tif", "cog", "envi", "zarr"])
def test_the_figures_are_in_the_outputs_attributes_in_memory_and_streamed(tmp_path: Path, output_format: str) -> None:
    from dualsr_deploy.data import write_scene
    from dualsr_deploy.data.scene import Scene, SceneMeta

    write_scene(tmp_path / "lr" / "scene.h5", Scene("scene", smooth(8, 32, 32), SceneMeta("made", "hdf5")))
    stored = {}
    for name, budget in (("memory", "4G"), ("streamed", "10K")):
        out = tmp_path / name
        args = ["infer", str(tmp_path / "lr"), "-o", str(out), "--scale", "2", "--memory-budget", budget]
        result = runner.invoke(app, [*args, "--tile", "16", "--format", output_format], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        (record,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        output = out / str(record["output"])
        if output_format == "zarr":
            xr = pytest.importorskip("xarray")
            with xr.open_zarr(output) as ds:
                provenance = json.loads(ds["cube"].attrs["dualsr_scene"])["attrs"]
        else:
            from dualsr_deploy.data.formats import open_scene

            with open_scene(output) as reader:
                provenance = reader.attrs
        stored[name] = json.loads(provenance["dualsr_consistency"])
        assert stored[name] == record["consistency"]  # the record's figures, in the file itself
    for op in ("area", "bicubic"):
        assert stored["streamed"][op]["psnr_db"] == pytest.approx(stored["memory"][op]["psnr_db"], abs=2e-4)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_block_means_are_torchs_average_pooling_bit_for_bit(scale: int) -> None:
    """The consistency figures' block mean sums strided views in avg_pool2d's order: the same float32 values, on a
    strip's rows (a view that is not contiguous) as on a whole cube."""
    import torch

    from dualsr_deploy.infer.consistency import _pool

    strip = torch.rand(7, 40, 12 * scale, generator=torch.Generator().manual_seed(scale))
    for cube in (strip, strip[:, 4 : 4 + 6 * scale]):
        expected = torch.nn.functional.avg_pool2d(cube[None].contiguous(), scale)[0].numpy()
        assert np.array_equal(_pool(cube, scale), expected)


def test_the_figures_do_not_depend_on_how_the_rows_are_handed_over() -> None:
    """Strips are cut from the top whatever rows come at a time (one, an odd count, all), so the figures are the same
    to the last bit; the rows handed over may be views, and changing them afterwards changes nothing."""
    from dualsr_deploy.infer.consistency import Consistency, StripConsistency

    rng = np.random.default_rng(5)
    lr = smooth(6, 30, 22)
    valid = np.ones((30, 22), dtype=bool)
    valid[11:13, 4:9] = False
    base = np.repeat(np.repeat(lr, 2, axis=1), 2, axis=2) + rng.normal(0, 0.01, (6, 60, 44)).astype(np.float32)
    good = np.array([True, True, False, True, True, True])

    def figures(cuts: list[int]) -> dict[str, Any] | None:
        sr = np.concatenate([base, base], axis=1)[:, 60:]  # a view, as a streamed strip's rows are
        check = Consistency(good, 2, 1.0)
        feeder = StripConsistency(check, lambda a, b: (lr[:, a:b], valid[a:b]), 30, 22, memory=6 * 4 * 6 * 4 * 22 * 18)
        assert feeder.rows == 10  # strips of 10 LR rows: the cuts below fall inside and across them
        for a, b in zip([0, *cuts], [*cuts, 60], strict=True):
            feeder.add_rows(a, sr[:, a:b])
            sr[:, a:b] = 0  # the caller's rows are theirs again
        return feeder.finish()

    whole = figures([])
    assert whole is not None
    assert whole["area"]["psnr_db"] > 30
    assert figures(list(range(1, 60))) == whole
    assert figures([7, 13, 14, 41, 59]) == whole
