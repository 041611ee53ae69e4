"""A scene over the memory budget is streamed, and comes back in the format it would have had in memory: the same
file for the tools people open it with (GDAL, Spectral Python, xarray, netCDF4, h5py, scipy, tifffile), bit-identical
data and the same metadata as the in-memory run of the same scene. Inputs are built as their producers build them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data import read_scene
from tests.interop.producers import write_emit_granule, write_envi_bil

runner = CliRunner()
STREAMED = "10K"  # far under any of these scenes' working set: every scene streams
TILE = "16"  # the same tiles in both runs (left to itself, the tile size follows the memory budget)


def both(archive: Path, root: Path, *extra: str) -> tuple[Path, Path]:
    """``dualsr infer --scale 2`` of ``archive`` in memory and streamed; the two output folders."""
    outs = []
    for name, budget in (("memory", "4G"), ("streamed", STREAMED)):
        out = root / name
        args = ["infer", str(archive), "-o", str(out), "--scale", "2", "--memory-budget", budget, "--tile", TILE]
        args += list(extra)
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        (record,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert record["mode"] == ("memory" if name == "memory" else "streamed")
        notes = " ".join(record.get("notes") or [])
        assert "written as" not in notes or (extra[-1] == "mat" and "written as MATLAB v7.3" in notes), notes
        outs.append(out)
    return outs[0], outs[1]


def same_scene(a: Path, b: Path) -> None:
    """This package's reader gives the same cube, bit for bit, and the same metadata from both files (but the MATLAB
    version: a streamed ``.mat`` is v7.3)."""
    one, two = read_scene(a), read_scene(b)
    np.testing.assert_array_equal(one.cube, two.cube)
    assert one.meta.replace(source="", format="") == two.meta.replace(source="", format="")
    assert one.meta.format == two.meta.format or {one.meta.format, two.meta.format} == {"mat-v5", "mat-v7.3"}


def test_envi_bil_streams_to_envi_bil_that_gdal_and_spectral_read_as_in_memory(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    archive = tmp_path / "flightlines"
    archive.mkdir()
    write_envi_bil(archive / "ang20170323t202244_rdn", rows=24, cols=20, bands=30)
    memory, streamed = both(archive, tmp_path, "--stage", "backproject")
    name = "ang20170323t202244_rdn"
    for suffix in (".hdr", "", ".dualsr.json"):  # header, data (named as the input's) and provenance: the same bytes
        assert (streamed / f"{name}{suffix}").read_bytes() == (memory / f"{name}{suffix}").read_bytes(), suffix
    assert "interleave = bil" in (streamed / f"{name}.hdr").read_text()
    with rasterio.open(streamed / name) as s, rasterio.open(memory / name) as m:
        assert s.tags(ns="ENVI")
        assert s.tags(ns="ENVI") == m.tags(ns="ENVI")
        assert [s.tags(b) for b in range(1, s.count + 1)] == [m.tags(b) for b in range(1, m.count + 1)]
        assert s.tags(ns="IMAGE_STRUCTURE")["INTERLEAVE"] == "LINE"
        np.testing.assert_array_equal(s.read(), m.read())
    spectral = pytest.importorskip("spectral")
    image = spectral.open_image(str(streamed / f"{name}.hdr"))
    assert image.metadata["interleave"] == "bil"
    assert len(image.metadata["wavelength"]) == 30


@pytest.mark.parametrize("interleave", ["bsq", "bip"])
def test_envi_streams_in_the_inputs_interleave(tmp_path: Path, interleave: str) -> None:
    archive = tmp_path / "in"
    archive.mkdir()
    image = archive / "scene"
    write_envi_bil(image, rows=20, cols=18, bands=12, byte_order=0)
    cube = np.fromfile(image, dtype="<i2").reshape(20, 12, 18)  # BIL (lines, bands, samples) as written
    order = {"bsq": (1, 0, 2), "bip": (0, 2, 1)}[interleave]
    np.ascontiguousarray(np.transpose(cube, order)).tofile(image)
    header = image.with_suffix(".hdr")
    header.write_text(header.read_text().replace("interleave = bil", f"interleave = {interleave}"))
    memory, streamed = both(archive, tmp_path, "--stage", "coarse")
    assert f"interleave = {interleave}" in (streamed / "scene.hdr").read_text()
    for suffix in (".hdr", ""):
        assert (streamed / f"scene{suffix}").read_bytes() == (memory / f"scene{suffix}").read_bytes(), suffix


@pytest.mark.parametrize("output_format", ["tif", "cog"])
def test_geotiff_and_cog_stream_by_windows_with_their_tags(
    geotiff_input: Path, tmp_path: Path, output_format: str
) -> None:
    rasterio = pytest.importorskip("rasterio")
    memory, streamed = both(geotiff_input, tmp_path, "--stage", "coarse", "--format", output_format)
    (m_path,) = memory.glob("*.tif")
    (s_path,) = streamed.glob("*.tif")
    assert s_path.name == m_path.name
    with rasterio.open(s_path) as s, rasterio.open(m_path) as m:
        assert (s.crs, s.transform, s.nodata, s.dtypes) == (m.crs, m.transform, m.nodata, m.dtypes)
        assert s.tags() == m.tags()
        for band in range(1, s.count + 1):
            assert s.tags(band) == m.tags(band)
            assert s.tags(band, ns="IMAGERY") == m.tags(band, ns="IMAGERY")
        assert (s.descriptions, s.scales, s.offsets) == (m.descriptions, m.scales, m.offsets)
        np.testing.assert_array_equal(s.read(), m.read())
        if output_format == "cog":
            assert s.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    if output_format == "cog":
        cogeo = pytest.importorskip("rio_cogeo.cogeo")
        valid, errors, _warnings = cogeo.cog_validate(str(s_path))
        assert valid, errors
    same_scene(s_path, m_path)


def test_emit_netcdf_streams_by_hyperslabs_into_its_structure(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    netcdf4 = pytest.importorskip("netCDF4")
    archive = tmp_path / "granules"
    archive.mkdir()
    granule = archive / "EMIT_L2A_RFL_001_20230401T185249_2309112_002.nc"
    write_emit_granule(granule, rows=14, cols=12, bands=24)
    memory, streamed = both(archive, tmp_path, "--stage", "backproject")
    s_path, m_path = streamed / granule.name, memory / granule.name
    for group in (None, "location", "sensor_band_parameters"):
        with (
            xr.open_dataset(s_path, engine="h5netcdf", group=group) as s,
            xr.open_dataset(m_path, engine="h5netcdf", group=group) as m,
        ):
            xr.testing.assert_identical(s, m)
    with netcdf4.Dataset(s_path) as s, netcdf4.Dataset(m_path) as m:
        assert s.dimensions.keys() == m.dimensions.keys()
        np.testing.assert_array_equal(s["reflectance"][:], m["reflectance"][:])
    same_scene(s_path, m_path)


@pytest.mark.parametrize("output_format", ["h5", "npy", "mat", "zarr", "tif"])
def test_other_formats_stream_to_what_memory_writes(tmp_path: Path, output_format: str) -> None:
    """From an HDF5 cube with no georeferencing: HDF5, NumPy, MATLAB (v7.3 when streamed), Zarr and a plain TIFF."""
    from dualsr_deploy.data import Scene, SceneMeta, write_scene
    from tests.interop.producers import smooth_spectra

    if output_format == "zarr":
        pytest.importorskip("zarr")
    archive = tmp_path / "in"
    cube = np.transpose(smooth_spectra(18, 20, 16, seed=2), (2, 0, 1))
    wavelengths = tuple(float(w) for w in range(400, 560, 10))
    write_scene(archive / "cube.h5", Scene("cube", cube, SceneMeta("producer", "hdf5", wavelengths=wavelengths)))
    memory, streamed = both(archive, tmp_path, "--stage", "coarse", "--format", output_format)
    suffix = {"h5": ".h5", "npy": ".npy", "mat": ".mat", "zarr": ".zarr", "tif": ".tif"}[output_format]
    m_path, s_path = memory / f"cube{suffix}", streamed / f"cube{suffix}"
    if output_format != "zarr":  # (this package writes Zarr, and reads it through xarray only)
        same_scene(s_path, m_path)
    if output_format == "mat":  # MATLAB v7.3 is HDF5 with MATLAB's header: h5py opens it, as MATLAB does
        import h5py

        assert s_path.read_bytes()[:10] == b"MATLAB 7.3"
        with h5py.File(s_path, "r") as handle:
            assert handle["cube"].shape == (16, 40, 36)  # MATLAB's (rows, columns, bands), axes reversed
    if output_format == "tif":
        import tifffile

        with tifffile.TiffFile(s_path) as tif:
            assert tif.series[0].shape == (16, 36, 40)
    if output_format == "zarr":
        xr = pytest.importorskip("xarray")
        with xr.open_zarr(s_path) as s, xr.open_zarr(m_path) as m:
            xr.testing.assert_identical(s, m)


@pytest.mark.parametrize("suffix", [".hdr", ".h5", ".tif"])
def test_data_convert_streams_a_scene_over_its_budget_to_the_same_file(tmp_path: Path, suffix: str) -> None:
    """An AVIRIS-style ENVI BIL (int16, big-endian, no-data, long header) converted whole and in strips."""
    if suffix == ".tif":
        pytest.importorskip("rasterio")
    archive = tmp_path / "in"
    archive.mkdir()
    write_envi_bil(archive / "ang20170323t202244_rdn", rows=23, cols=17, bands=12)
    outs = {}
    for name, budget in (("whole", "4G"), ("strips", STREAMED)):
        args = ["data", "convert", str(archive), str(tmp_path / name), "--to", suffix, "--units", "source"]
        result = runner.invoke(app, [*args, "--memory-budget", budget], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        outs[name] = tmp_path / name / f"ang20170323t202244_rdn{suffix}"
    if suffix == ".hdr":
        for ending in (".hdr", ""):
            whole, strips = (outs[k].with_suffix(ending).read_bytes() for k in ("whole", "strips"))
            assert whole == strips, ending
    same_scene(outs["strips"], outs["whole"])
    back = read_scene(outs["strips"])
    assert back.meta.nodata == -9999
    assert (back.raw()[:, 0, 0] == -9999).all()  # the no-data pixel comes back as no-data


def test_a_writer_that_cannot_start_leaves_nothing(tmp_path: Path) -> None:
    from dualsr_deploy.data import SceneMeta
    from dualsr_deploy.data.formats import open_strips
    from dualsr_deploy.errors import DataError

    with pytest.raises(DataError, match="ENVI cannot hold"):
        open_strips(tmp_path / "x.hdr", (2, 4, 4), SceneMeta("s", "npy"), {}, dtype="float16")
    with pytest.raises(DataError, match="rebuilds the structure of the EMIT or AVIRIS-3 product"):
        open_strips(tmp_path / "x.nc", (2, 4, 4), SceneMeta("s", "npy"), {})
    assert list(tmp_path.iterdir()) == []  # no staging folder, no partial file
