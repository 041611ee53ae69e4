"""Every writer's output opened by the clients users have, not by this package's readers: xarray (h5netcdf engine)
and netCDF4 for NetCDF; GDAL through rasterio for GeoTIFF, COG and ENVI; Spectral Python for ENVI; h5py for HDF5;
scipy.io for MATLAB; and, where Debian's ``gdal-bin`` and ``netcdf-bin`` are installed, ``gdalinfo`` and
``ncdump -h`` with no error. Inputs are built the way their producers build them (:mod:`tests.interop.producers`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data.validity import nearest_up
from tests.conftest import SHARED
from tests.interop.producers import EMIT_FILL, UTM11_WKT, write_emit_granule, write_envi_bil

runner = CliRunner()
ENMAP_TILE = SHARED / "data" / "products" / "enmap_l2a_tiles" / "enmap_potsdam_tile_64_0.tif"


def infer(archive: Path, out: Path, *extra: str, code: int = 0) -> str:
    result = runner.invoke(app, ["infer", str(archive), "-o", str(out), "--scale", "2", *extra], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


def tool(*command: str) -> subprocess.CompletedProcess[str] | None:
    """``command`` run when its program is installed (Debian's gdal-bin, netcdf-bin), else None."""
    if shutil.which(command[0]) is None:
        return None
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def emit_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, str]:
    """An EMIT L2A granule written with netCDF4, through ``dualsr infer --scale 2`` with no other option."""
    pytest.importorskip("netCDF4")
    root = tmp_path_factory.mktemp("emit")
    archive = root / "granules"
    archive.mkdir()
    granule = archive / "EMIT_L2A_RFL_001_20230401T185249_2309112_002.nc"
    cube = write_emit_granule(granule)
    said = infer(archive, root / "sr")
    return granule, root / "sr" / granule.name, cube, said


def test_emit_output_opens_in_xarray_root_and_both_groups(emit_output: tuple[Path, Path, np.ndarray, str]) -> None:
    xr = pytest.importorskip("xarray")

    granule, output, cube, said = emit_output
    assert "--stage auto → backproject" in said  # ×2 has no ×1 model: the default says what it chose
    rows, cols, bands = cube.shape
    with xr.open_dataset(output, engine="h5netcdf") as root, xr.open_dataset(granule, engine="h5netcdf") as source:
        assert dict(root.sizes) == {"downtrack": 2 * rows, "crosstrack": 2 * cols, "bands": bands}
        reflectance = root["reflectance"].values
        fill = nearest_up(np.transpose(cube == EMIT_FILL, (2, 0, 1)), 2).transpose(1, 2, 0)
        np.testing.assert_array_equal(np.isnan(reflectance), fill)  # NaN exactly where the input was fill
        assert root["reflectance"].encoding["_FillValue"] == EMIT_FILL
        for key in ("title", "time_coverage_start", "spatial_ref", "product_version"):
            assert root.attrs[key] == source.attrs[key]
        np.testing.assert_allclose(root.attrs["geotransform"][[1, 5]], source.attrs["geotransform"][[1, 5]] / 2)
        assert root["reflectance"].attrs["units"] == "unitless"
    with xr.open_dataset(output, engine="h5netcdf", group="location") as location:
        assert location["lat"].shape == (2 * rows, 2 * cols)
        assert location["glt_x"].dims == ("ortho_y", "ortho_x")
        assert location["lat"].attrs["units"] == "degrees_north"
    with (
        xr.open_dataset(output, engine="h5netcdf", group="sensor_band_parameters") as params,
        xr.open_dataset(granule, engine="h5netcdf", group="sensor_band_parameters") as given,
    ):
        xr.testing.assert_identical(params, given)


def test_emit_output_opens_in_netcdf4_and_ncdump(emit_output: tuple[Path, Path, np.ndarray, str]) -> None:
    nc4 = pytest.importorskip("netCDF4")

    _granule, output, cube, _said = emit_output
    rows, cols, bands = cube.shape
    with nc4.Dataset(output) as handle:
        assert handle["reflectance"].dimensions == ("downtrack", "crosstrack", "bands")
        assert handle["reflectance"].shape == (2 * rows, 2 * cols, bands)
        assert {name: len(dim) for name, dim in handle.dimensions.items()} == {
            "downtrack": 2 * rows,
            "crosstrack": 2 * cols,
            "bands": bands,
            "ortho_y": 2 * (rows + 3),
            "ortho_x": 2 * (cols + 2),
        }
        assert set(handle.groups) == {"sensor_band_parameters", "location"}
        assert handle["location"]["glt_y"].shape == (2 * (rows + 3), 2 * (cols + 2))
        assert np.ma.is_masked(handle["reflectance"][0, 0, 0])
    done = tool("ncdump", "-h", str(output))
    if done is not None:
        assert done.returncode == 0, done.stderr
        assert "error" not in done.stderr.lower(), done.stderr
        assert "reflectance(downtrack, crosstrack, bands)" in done.stdout
        assert ":title = " in done.stdout  # char attributes, as netCDF4 and the EMIT SDS write them


def test_a_netcdf_whose_dimension_scales_disagree_is_refused_by_name(tmp_path: Path) -> None:
    import h5py

    pytest.importorskip("netCDF4")
    archive = tmp_path / "granules"
    archive.mkdir()
    good = archive / "EMIT_L2A_RFL_001_20230401T185249_2309112_002.nc"
    write_emit_granule(good)
    bad = archive / "EMIT_L2A_RFL_001_20230401T185301_2309112_003.nc"
    write_emit_granule(bad)
    with h5py.File(bad, "r+") as handle:  # a dimension scale one row short of the variable attached to it
        del handle["downtrack"]
        handle.create_dataset("downtrack", data=np.zeros(5, np.float32))
        handle["downtrack"].make_scale("downtrack")
        handle["reflectance"].dims[0].attach_scale(handle["downtrack"])
    said = infer(archive, tmp_path / "sr", "--stage", "coarse", code=1)
    assert f"{bad.name}" in said
    assert "dimension scales disagree" in said
    assert (tmp_path / "sr" / good.name).is_file()


@pytest.fixture(scope="module")
def envi_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("envi")
    archive = root / "flightlines"
    archive.mkdir()
    image = archive / "ang20170323t202244_rdn"
    values, _header = write_envi_bil(image)
    infer(archive, root / "sr", "--stage", "coarse")
    return image, root / "sr" / "ang20170323t202244_rdn", values


def test_envi_output_reads_in_gdal_as_its_input_does(envi_output: tuple[Path, Path, np.ndarray]) -> None:
    rasterio = pytest.importorskip("rasterio")
    source, output, _values = envi_output
    with rasterio.open(source) as given, rasterio.open(output) as written:  # its data file, named as the input's
        assert (written.count, written.height, written.width) == (given.count, 2 * given.height, 2 * given.width)
        assert written.crs == given.crs
        assert written.nodata == given.nodata == -9999
        assert written.transform.a == given.transform.a / 2
        assert written.transform.e == given.transform.e / 2
        assert (written.transform.c, written.transform.f) == (given.transform.c, given.transform.f)
        assert written.descriptions == given.descriptions
        assert [written.tags(b) for b in range(1, written.count + 1)] == [
            given.tags(b) for b in range(1, given.count + 1)
        ]
        assert written.tags(ns="IMAGE_STRUCTURE")["INTERLEAVE"] == given.tags(ns="IMAGE_STRUCTURE")["INTERLEAVE"]
        written_tags, given_tags = written.tags(ns="ENVI"), given.tags(ns="ENVI")
        assert given_tags
        assert written_tags.get("sensor_type") == given_tags.get("sensor_type")
        assert written.dtypes == given.dtypes
    done = tool("gdalinfo", str(output))
    if done is not None:
        assert done.returncode == 0, done.stderr
        assert "ERROR" not in done.stderr + done.stdout, done.stderr


def test_envi_output_reads_in_spectral_as_its_input_does(envi_output: tuple[Path, Path, np.ndarray]) -> None:
    envi = pytest.importorskip("spectral.io.envi")
    source, output, values = envi_output
    given = envi.open(f"{source}.hdr", str(source))
    written = envi.open(str(output.with_suffix(".hdr")))
    changed = {"samples", "lines", "map info", "description", "header offset"}
    assert {k: v for k, v in written.metadata.items() if k not in changed} == {
        k: v for k, v in given.metadata.items() if k not in changed
    }
    header = output.with_suffix(".hdr").read_text()
    assert f"coordinate system string = {{{UTM11_WKT}}}" in header  # byte for byte
    assert "test subset [Mon Jun  5 10:11:12 2017]" in written.metadata["description"]  # kept, and a note added
    assert "super-resolved x2 by dualsr-deploy" in written.metadata["description"]
    longest = max(len(line) for line in Path(f"{source}.hdr").read_text().splitlines())
    assert max(len(line) for line in header.splitlines()) <= longest
    cube = written.load()  # (rows, cols, bands)
    assert cube[2 * 3, 2 * 4, 2] < 0  # a valid negative value of a good band is not clipped to 0
    assert cube[0, 0, 0] == -9999
    assert values[0, 0, 0] == -9999
    assert output.with_name(output.name + ".dualsr.json").is_file()


def test_an_envi_header_with_an_unbalanced_brace_is_refused_by_name(tmp_path: Path) -> None:
    archive = tmp_path / "flightlines"
    archive.mkdir()
    write_envi_bil(archive / "good")
    write_envi_bil(archive / "broken")
    header = archive / "broken.hdr"
    header.write_text(header.read_text().replace('UNIT["Meter",1.0]]}', 'UNIT["Meter",1.0]]'))
    said = infer(archive, tmp_path / "sr", "--stage", "coarse", code=1)
    assert "broken.hdr" in said
    assert "never closes it" in said
    assert (tmp_path / "sr" / "good.hdr").is_file()


@pytest.mark.parametrize("output_format", ["tif", "cog"])
def test_geotiff_and_cog_keep_dataset_and_band_tags_in_gdal(
    geotiff_input: Path, tmp_path: Path, output_format: str
) -> None:
    rasterio = pytest.importorskip("rasterio")
    infer(geotiff_input, tmp_path / "sr", "--stage", "coarse", "--format", output_format)
    (source,) = geotiff_input.glob("*.tif")
    (output,) = (tmp_path / "sr").glob("*.tif")
    assert output.name.endswith(".cog.tif" if output_format == "cog" else ".tif")
    with rasterio.open(source) as given, rasterio.open(output) as written:
        assert (written.height, written.width) == (2 * given.height, 2 * given.width)
        assert written.crs == given.crs
        assert written.nodata == given.nodata
        assert written.transform.a == 15
        assert written.transform.c == given.transform.c
        for key, value in given.tags().items():
            assert written.tags()[key] == value
        for band in range(1, given.count + 1):
            for key, value in given.tags(band).items():
                assert written.tags(band)[key] == value
            imagery = written.tags(band, ns="IMAGERY")
            assert float(imagery["CENTRAL_WAVELENGTH_UM"]) == pytest.approx(0.42 + 0.02 * (band - 1))
            assert float(imagery["FWHM_UM"]) == pytest.approx(0.0065)
        assert written.descriptions == given.descriptions
        if output_format == "cog":
            assert written.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert written.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
    if output_format == "cog":
        cogeo = pytest.importorskip("rio_cogeo.cogeo")  # `rio cogeo validate`, as users check a COG
        valid, errors, _warnings = cogeo.cog_validate(str(output))
        assert valid, errors
    done = tool("gdalinfo", str(output))
    if done is not None:
        assert done.returncode == 0, done.stderr
        assert "ERROR" not in done.stderr, done.stderr
        if output_format == "cog":
            assert "LAYOUT=COG" in done.stdout


def test_hdf5_and_matlab_outputs_open_in_h5py_and_scipy(geotiff_input: Path, tmp_path: Path) -> None:
    import h5py
    import scipy.io

    infer(geotiff_input, tmp_path / "h5", "--stage", "coarse", "--format", "h5")
    infer(geotiff_input, tmp_path / "mat", "--stage", "coarse", "--format", "mat")
    (h5,) = (tmp_path / "h5").glob("*.h5")
    (mat,) = (tmp_path / "mat").glob("*.mat")
    with h5py.File(h5, "r") as handle:
        assert handle["cube"].shape == (20, 32, 32)
        assert handle["cube"].attrs["_FillValue"] == -32768
        assert handle["cube"].attrs["wavelengths"][0] == pytest.approx(0.42)
    loaded = scipy.io.loadmat(mat)
    assert loaded["cube"].shape == (32, 32, 20)


@pytest.mark.skipif(not ENMAP_TILE.is_file(), reason="../shared/data/products not found")
def test_every_real_product_goes_through_at_x2_with_no_flag_and_opens_in_gdal_and_spectral(tmp_path: Path) -> None:
    """``dualsr infer ../shared/data/products -o OUT --scale 2``: exit 0, and every output opens in GDAL (and the
    ENVI ones in Spectral) with the band metadata, nodata and georeferencing their inputs had."""
    rasterio = pytest.importorskip("rasterio")
    envi = pytest.importorskip("spectral.io.envi")
    products = ENMAP_TILE.parents[1]
    said = infer(products, tmp_path / "sr")
    assert "--stage auto → backproject" in said
    tiffs = [p for p in (tmp_path / "sr").rglob("*.tif")]
    envi_data = [h.with_name(h.stem) for h in (tmp_path / "sr").rglob("*.hdr")]  # named as their inputs' (no suffix)
    written = sorted(tiffs + envi_data)
    assert len(written) == 9
    assert all(p.is_file() for p in envi_data)
    for output in written:
        relative = output.relative_to(tmp_path / "sr")
        source = products / relative
        with rasterio.open(source) as given, rasterio.open(output) as made:
            assert (made.count, made.height, made.width) == (given.count, 2 * given.height, 2 * given.width)
            assert made.nodata == given.nodata
            assert made.crs == given.crs
            assert made.descriptions == given.descriptions
            if not given.transform.is_identity:  # one AVIRIS-NG subset comes without map info
                assert made.res == (given.res[0] / 2, given.res[1] / 2)
            assert [made.tags(b).get("wavelength") for b in range(1, made.count + 1)] == [
                given.tags(b).get("wavelength") for b in range(1, given.count + 1)
            ]
        if output in envi_data:
            header = envi.open(f"{output}.hdr", str(output)).metadata
            source_header = envi.open(f"{source}.hdr", str(source)).metadata
            for key in ("wavelength", "fwhm", "bbl", "band names", "data ignore value", "byte order", "interleave"):
                assert header.get(key) == source_header.get(key), key
        done = tool("gdalinfo", str(output))
        if done is not None:
            assert done.returncode == 0, done.stderr
            assert "ERROR" not in done.stderr, done.stderr


def test_zarr_output_opens_in_xarray_with_its_coordinates_and_resumes(geotiff_input: Path, tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("zarr")
    import json

    infer(geotiff_input, tmp_path / "zarr", "--stage", "coarse", "--format", "zarr")
    infer(geotiff_input, tmp_path / "h5", "--stage", "coarse", "--format", "h5")
    (store,) = (tmp_path / "zarr").glob("*.zarr")
    (h5,) = (tmp_path / "h5").glob("*.h5")
    raw = {"mask_and_scale": False}  # the stored values, as the HDF5 output holds them
    with (
        xr.open_zarr(store, **raw) as ds,
        xr.open_dataset(h5, engine="h5netcdf", phony_dims="sort") as reference,
    ):
        cube = ds["cube"]
        assert cube.dims == ("band", "y", "x")
        assert cube.shape == (20, 32, 32)
        np.testing.assert_allclose(ds["wavelength"].values[:2], [0.42, 0.44])
        np.testing.assert_allclose(ds["x"].values[:2], [362175 + 7.5, 362175 + 22.5])  # the finer pixel centres
        wkt = ds["spatial_ref"].attrs["crs_wkt"]  # the CF grid mapping rioxarray and GDAL read
        assert "EPSG" in wkt or "UTM" in wkt
        assert cube.attrs["_FillValue"] == -32768
        assert cube.attrs["dualsr_units"] == "source"
        assert "units" not in cube.attrs
        np.testing.assert_array_equal(cube.values, reference["cube"].values)
    pytest.importorskip("rioxarray")  # registers .rio
    with xr.open_zarr(store) as ds:
        assert ds["cube"].rio.crs is not None
        assert ds["cube"].rio.crs.to_epsg() is not None
    zarr = pytest.importorskip("zarr")
    assert zarr.open_group(str(store)).metadata.zarr_format == (3 if zarr.__version__.startswith("3") else 2)
    assert (store / "zarr.json").is_file() or (store / ".zmetadata").is_file()
    record = json.loads((tmp_path / "zarr" / "manifest.jsonl").read_text().splitlines()[0])
    assert record["output_sha256"]
    chunk = next(p for p in sorted((store / "cube").rglob("*")) if p.is_file() and not p.name.startswith((".", "zarr")))
    chunk.unlink()  # a chunk lost: --resume redoes the scene
    said = infer(geotiff_input, tmp_path / "zarr", "--stage", "coarse", "--format", "zarr", "--resume")
    assert "1 done" in said


def test_an_aviris3_file_with_named_dimensions_comes_back_valid_netcdf(tmp_path: Path) -> None:
    """AVIRIS-3 as a netCDF library writes it: named dimensions at the root with coordinate variables, the cube and
    its wavelength coordinate in the ``reflectance`` group. The output keeps that structure at ×2: netCDF4 and
    xarray open it, the coordinate variables at the finer pixel centres, the grid mapping's GeoTransform ÷ 2."""
    nc4 = pytest.importorskip("netCDF4")
    xr = pytest.importorskip("xarray")
    archive = tmp_path / "av3"
    archive.mkdir()
    path = archive / "AV320230915t213013_L2A_OE_main_RFL_ORT.nc"
    with nc4.Dataset(path, "w") as handle:
        for name, size in (("northing", 12), ("easting", 10), ("wavelength", 24)):
            handle.createDimension(name, size)
        handle.createVariable("northing", "f8", ("northing",))[:] = 3813729.0 - 5 * np.arange(12)
        handle.createVariable("easting", "f8", ("easting",))[:] = 353128.0 + 5 * np.arange(10)
        mapping = handle.createVariable("transverse_mercator", "i4")
        mapping.GeoTransform = "353125.5 5 0 3813731.5 0 -5"
        mapping.spatial_ref = 'PROJCS["WGS 84 / UTM zone 11N"]'
        group = handle.createGroup("reflectance")
        group.createVariable("wavelength", "f4", ("wavelength",))[:] = np.linspace(400, 2400, 24)
        cube = group.createVariable("reflectance", "f4", ("wavelength", "northing", "easting"), fill_value=-9999.0)
        cube.grid_mapping = "transverse_mercator"
        from tests.interop.producers import smooth_spectra

        cube[:] = np.transpose(smooth_spectra(12, 10, 24), (2, 0, 1))
    infer(archive, tmp_path / "sr", "--stage", "coarse")
    output = tmp_path / "sr" / path.name
    with nc4.Dataset(output) as handle:
        assert {name: len(dim) for name, dim in handle.dimensions.items()} == {
            "northing": 24,
            "easting": 20,
            "wavelength": 24,
        }
        assert handle["reflectance"]["reflectance"].dimensions == ("wavelength", "northing", "easting")
        assert handle["transverse_mercator"].GeoTransform == "353125.5 2.5 0.0 3813731.5 0.0 -2.5"
    with xr.open_dataset(output, engine="h5netcdf") as root:
        np.testing.assert_allclose(root["easting"].values[:3], [353126.75, 353129.25, 353131.75])
    with xr.open_dataset(output, engine="h5netcdf", group="reflectance") as group_ds:
        assert group_ds["reflectance"].shape == (24, 24, 20)
        assert not np.isnan(group_ds["reflectance"].values).any()
    done = tool("ncdump", "-h", str(output))
    if done is not None:
        assert done.returncode == 0, done.stderr
