"""EMIT L1B/L2A granules (NetCDF4): no public sample could be had here, so these tests build small granules in the
structure the EMIT SDS documents and its ``emit_tools.py`` reads (root ``reflectance`` (downtrack, crosstrack,
bands) with ``_FillValue`` −9999; ``sensor_band_parameters/{wavelengths, fwhm, good_wavelengths}``;
``location/{lat, lon, elev, glt_x, glt_y}`` with 1-based GLT indices, 0 = no data; global ``geotransform`` and
``spatial_ref``), filled with the real EMIT L2A reflectance of ``../shared/data/products/emit_l2a_envi``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data.archive import open_archive
from dualsr_deploy.data.formats import open_scene
from dualsr_deploy.data.formats.netcdf.write import rebuild_glt
from dualsr_deploy.data.validity import nearest_up
from tests.conftest import SHARED

runner = CliRunner()
EMIT_ENVI = SHARED / "data" / "products" / "emit_l2a_envi"
needs_sample = pytest.mark.skipif(not EMIT_ENVI.is_dir(), reason="../shared/data/products not found")


def make_granule(path: Path) -> np.ndarray:
    """An EMIT-structured L2A granule from the real sample; its left 2 columns are fill. Returns the cube (H, W, C)."""
    import h5py

    (header,) = EMIT_ENVI.glob("*.hdr")
    with open_scene(header) as reader:
        raw = np.transpose(reader.read_raw(), (1, 2, 0)).copy()  # (downtrack, crosstrack, bands)
        wavelengths, fwhm, bad = reader.wavelengths, reader.fwhm, reader.declared_bad
    raw[:, :2, :] = -9999
    rows, cols, bands = raw.shape
    with h5py.File(path, "w") as handle:
        cube = handle.create_dataset("reflectance", data=raw)
        cube.attrs["_FillValue"] = np.float32(-9999)
        params = handle.create_group("sensor_band_parameters")
        params.create_dataset("wavelengths", data=np.asarray(wavelengths, np.float32))
        params.create_dataset("fwhm", data=np.asarray(fwhm, np.float32))
        params.create_dataset(
            "good_wavelengths", data=np.asarray([0 if b in bad else 1 for b in range(bands)], np.float32)
        )
        location = handle.create_group("location")
        grid_r, grid_c = np.indices((rows, cols), dtype=np.float64)
        location.create_dataset("lat", data=34.0 + 0.0006 * grid_r)
        location.create_dataset("lon", data=-118.0 + 0.0006 * grid_c)
        location.create_dataset("elev", data=100.0 + grid_r + grid_c)
        glt_x = np.zeros((rows + 2, cols + 2), np.int32)
        glt_y = np.zeros((rows + 2, cols + 2), np.int32)
        glt_x[1:-1, 1:-1], glt_y[1:-1, 1:-1] = grid_c + 1, grid_r + 1
        location.create_dataset("glt_x", data=glt_x)
        location.create_dataset("glt_y", data=glt_y)
        handle.attrs["geotransform"] = np.asarray([-118.0006, 0.0006, 0.0, 34.0006, 0.0, -0.0006])
        handle.attrs["spatial_ref"] = 'GEOGCS["WGS 84",DATUM["WGS_1984"]]'
        handle.attrs["title"] = "EMIT L2A Estimated Surface Reflectance 60 m V001"
    return raw


def test_glt_rebuilt_for_a_finer_grid() -> None:
    x, y = rebuild_glt(np.array([[0, 1], [2, 0]]), np.array([[0, 1], [1, 0]]), 2)
    assert x.tolist() == [[0, 0, 1, 2], [0, 0, 1, 2], [3, 4, 0, 0], [3, 4, 0, 0]]
    assert y.tolist() == [[0, 0, 1, 1], [0, 0, 2, 2], [1, 1, 0, 0], [2, 2, 0, 0]]


@needs_sample
def test_an_emit_granule_goes_through_infer_and_comes_back_in_its_structure(tmp_path: Path) -> None:
    import h5py

    archive = tmp_path / "granules"
    archive.mkdir()
    granule = archive / "EMIT_L2A_RFL_001_20250324T221005_2508315_006.nc"
    raw = make_granule(granule)
    (archive / "truncated.nc").write_bytes(granule.read_bytes()[:600])  # a download cut short
    with h5py.File(archive / "other.nc", "w") as handle:  # NetCDF, but no known cube variable
        handle.create_dataset("temperature", data=np.zeros((3, 4, 5), np.float32))
    entries = {e.name: e for e in open_archive(archive).entries}
    assert entries["EMIT_L2A_RFL_001_20250324T221005_2508315_006"].format == "emit"
    out = tmp_path / "sr"
    result = runner.invoke(
        app, ["infer", str(archive), "-o", str(out), "--scale", "2", "--stage", "coarse"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1, result.output  # the two bad files fail, with reasons, and the run goes on
    said = " ".join(result.output.split())  # the console wraps long lines where the temporary path is long
    assert "truncated.nc: cannot open it as NetCDF4/HDF5; is the file complete?" in said
    assert "other.nc: a NetCDF file without a known cube variable" in said
    written = out / "EMIT_L2A_RFL_001_20250324T221005_2508315_006.nc"
    with h5py.File(written, "r") as sr, h5py.File(archive / written.name, "r") as lr:
        cube = sr["reflectance"][()]
        rows, cols, bands = raw.shape
        assert cube.shape == (2 * rows, 2 * cols, bands)
        assert cube.dtype == np.float32
        assert sr["reflectance"].attrs["_FillValue"] == -9999
        bad = np.flatnonzero(lr["sensor_band_parameters/good_wavelengths"][()] == 0)
        np.testing.assert_array_equal(
            cube[:, :, bad], nearest_up(np.transpose(raw[:, :, bad], (2, 0, 1)), 2).transpose(1, 2, 0)
        )
        good = np.flatnonzero(lr["sensor_band_parameters/good_wavelengths"][()] == 1)
        assert np.all(cube[:, :4][:, :, good] == -9999)  # the fill, exactly where the nearest LR pixel was fill
        assert np.all(cube[:, 4:][:, :, good] != -9999)
        for name in ("wavelengths", "fwhm", "good_wavelengths"):
            np.testing.assert_array_equal(
                sr[f"sensor_band_parameters/{name}"][()], lr[f"sensor_band_parameters/{name}"][()]
            )
        assert sr["location/lat"].shape == (2 * rows, 2 * cols)
        assert (
            lr["location/lat"][()].min()
            <= sr["location/lat"][()].min()
            <= sr["location/lat"][()].max()
            <= lr["location/lat"][()].max()
        )
        expected_x, expected_y = rebuild_glt(lr["location/glt_x"][()], lr["location/glt_y"][()], 2)
        np.testing.assert_array_equal(sr["location/glt_x"][()], expected_x)
        np.testing.assert_array_equal(sr["location/glt_y"][()], expected_y)
        np.testing.assert_allclose(sr.attrs["geotransform"], [-118.0006, 0.0003, 0.0, 34.0006, 0.0, -0.0003])
        assert sr.attrs["spatial_ref"] == lr.attrs["spatial_ref"]
        assert "dualsr_scene" in sr.attrs
    with open_scene(written) as reader:  # and reads back as a granule, metadata and all
        scene = reader.load()
    assert reader.format == "emit"
    assert scene.meta.bad_bands == tuple(int(b) for b in bad)
    assert scene.meta.nodata == -9999.0


@needs_sample
def test_the_mask_granule_adds_its_flagged_pixels_when_asked(tmp_path: Path) -> None:
    """An L2A MASK granule beside the reflectance one (``mask`` (downtrack, crosstrack, flags) with
    ``sensor_band_parameters/mask_bands`` naming them, as the EMIT SDS writes it): its Aggregate Flag joins the
    no-data under --product-masks, and the file is listed as read with its granule."""
    import h5py

    archive = tmp_path / "granules"
    archive.mkdir()
    granule = archive / "EMIT_L2A_RFL_001_20250324T221005_2508315_006.nc"
    raw = make_granule(granule)
    rows, cols, _bands = raw.shape
    names = ["Cloud flag", "Cirrus flag", "Water flag", "Spacecraft Flag", "Dilated Cloud Flag", "Aggregate Flag"]
    mask = np.zeros((rows, cols, len(names)), np.float32)
    mask[-2:, -3:, names.index("Aggregate Flag")] = 1  # a cloud in the bottom-right corner
    with h5py.File(archive / granule.name.replace("_RFL_", "_MASK_"), "w") as handle:
        handle.create_dataset("mask", data=mask)
        handle.create_group("sensor_band_parameters").create_dataset("mask_bands", data=np.array(names, dtype="S"))
    from dualsr_deploy.data.validity import Masking

    with open_scene(granule) as reader:
        plain = reader.load()
        masked = reader.load(masking=Masking(product_masks=True))
    assert plain.valid is not None
    assert masked.valid is not None
    assert int((~plain.valid).sum()) == rows * 2  # the fill columns alone
    assert int((~masked.valid).sum()) == rows * 2 + 2 * 3
    reasons = {s.path.name: s.reason for s in open_archive(archive).skipped}
    assert reasons[granule.name.replace("_RFL_", "_MASK_")].startswith("mask granule of EMIT_L2A_RFL_")
    args = ["infer", str(archive), "-o", str(tmp_path / "sr"), "--scale", "2", "--stage", "coarse", "--product-masks"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "sr" / granule.name, "r") as sr:
        good = np.flatnonzero(sr["sensor_band_parameters/good_wavelengths"][()] == 1)
        assert np.all(sr["reflectance"][-4:, -6:][:, :, good] == -9999)  # flagged pixels written as no-data
