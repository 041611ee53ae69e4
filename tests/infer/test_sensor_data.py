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
from dualsr_deploy.data.readers import open_scene
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
@pytest.mark.parametrize("scale", [2])
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
        for field in ("wavelengths", "fwhm", "nodata", "bad_bands"):
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


def test_refusals_name_the_scene_and_the_run_goes_on(tmp_path: Path) -> None:
    archive = tmp_path / "lr"
    archive.mkdir()
    good = np.random.default_rng(0).uniform(0.1, 0.9, (6, 8, 8)).astype(np.float32)
    np.save(archive / "fine.npy", good)
    np.save(archive / "empty.npy", np.full((6, 8, 8), np.nan, dtype=np.float32))
    args = ["infer", str(archive), "-o", str(tmp_path / "sr"), "--scale", "2", "--stage", "coarse"]
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
