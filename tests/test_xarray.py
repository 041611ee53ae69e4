"""``dualsr_deploy.xarray``: DataArrays and Datasets in, the same kind of object out; Dask-backed inputs stay lazy
and equal the in-memory result (≤ 1e-5 of the value range: the halo makes every chunk see what the whole scene
sees, so the only differences are float32 summation order in the SAM weight); on a 2-process ``LocalCluster``
too; the same values as ``dualsr infer`` on the same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.errors import InputError
from tests.conftest import SHARED

xr = pytest.importorskip("xarray")
dask = pytest.importorskip("dask")
dx = pytest.importorskip("dualsr_deploy.xarray")

ENMAP = SHARED / "data" / "products" / "enmap_l2a_tiles"
TOLERANCE = 1e-5


def cube_array(bands: int = 24, rows: int = 20, cols: int = 28, *, dims: tuple[str, ...] = ("band", "y", "x")) -> Any:
    """A smooth reflectance-like DataArray with coordinates as a notebook has them; two pixels NaN."""
    from tests.interop.producers import smooth_spectra

    values = np.transpose(smooth_spectra(rows, cols, bands, seed=11), (2, 0, 1)).copy()
    values[:, 3, 4] = np.nan
    values[:, 15, 20] = np.nan
    coords = {
        "band": np.arange(1, bands + 1),
        "wavelength": ("band", np.linspace(420.0, 2400.0, bands)),
        "y": 5_000_000.0 - 30.0 * np.arange(rows),
        "x": 360_000.0 + 30.0 * np.arange(cols),
    }
    da = xr.DataArray(values, dims=("band", "y", "x"), coords=coords, name="reflectance", attrs={"units": "1"})
    return da.transpose(*dims)


def close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    scale = np.nanmax(np.abs(a))
    assert np.nanmax(np.abs(a - b)) <= TOLERANCE * scale


def test_a_dataarray_comes_back_finer_with_its_coordinates_and_attributes() -> None:
    da = cube_array(dims=("y", "x", "band"))  # any dimension order
    sr = dx.super_resolve(da, scale=2, stage="coarse")
    assert sr.dims == da.dims
    assert dict(sr.sizes) == {"y": 40, "x": 56, "band": 24}
    np.testing.assert_allclose(sr.x.values[:3], [359_992.5, 360_007.5, 360_022.5])  # the finer pixel centres
    np.testing.assert_allclose(sr.y.values[:2], [5_000_007.5, 4_999_992.5])
    np.testing.assert_array_equal(sr.wavelength.values, da.wavelength.values)
    assert sr.attrs["units"] == "1"
    assert sr.attrs["dualsr_scale"] == 2
    nan = np.isnan(sr.transpose("band", "y", "x").values)
    assert nan[:, 6:8, 8:10].all()
    assert nan.sum() == 2 * 4 * 24
    accessor = da.dualsr.super_resolve(scale=2, stage="coarse")
    xr.testing.assert_identical(accessor, sr)


def test_a_dataset_keeps_its_other_variables_on_the_finer_grid() -> None:
    values = (
        cube_array()
        .rename({"band": "bands", "y": "downtrack", "x": "crosstrack"})
        .drop_vars(["downtrack", "crosstrack"])
    )
    rows, cols = values.sizes["downtrack"], values.sizes["crosstrack"]
    lat = xr.DataArray(34.0 - 0.0005 * np.arange(rows)[:, None] + 0 * np.arange(cols), dims=("downtrack", "crosstrack"))
    ds = xr.Dataset({"reflectance": values, "elev": lat * 1000}, coords={"lat": lat}, attrs={"title": "EMIT"})
    sr = dx.super_resolve(ds, "reflectance", scale=2, stage="coarse")
    assert dict(sr.sizes) == {"bands": 24, "downtrack": 2 * rows, "crosstrack": 2 * cols}
    assert sr.attrs["title"] == "EMIT"
    assert sr["elev"].shape == (2 * rows, 2 * cols)
    assert sr["lat"].shape == (2 * rows, 2 * cols)
    assert float(sr["lat"].max()) <= float(lat.max())
    assert float(sr["lat"].min()) >= float(lat.min())


def test_dask_inputs_stay_lazy_and_equal_the_in_memory_result_coarse_and_dual() -> None:
    da = cube_array(rows=28, cols=36)
    for scale, stage in ((2, "coarse"), (4, "dual")):
        memory = dx.super_resolve(da, scale=scale, stage=stage)
        lazy = dx.super_resolve(da.chunk({"band": -1, "y": 12, "x": 20}), scale=scale, stage=stage)
        assert hasattr(lazy.data, "dask")  # nothing computed yet
        close(lazy.values, memory.values)


def test_the_same_values_as_dualsr_infer_on_a_real_enmap_mosaic(tmp_path: Path) -> None:
    rioxarray = pytest.importorskip("rioxarray")
    if not ENMAP.is_dir():
        pytest.skip("../shared/data/products not found")
    from rioxarray.merge import merge_arrays

    from dualsr_deploy.cli.main import app
    from dualsr_deploy.data.formats import open_scene

    tiles = [rioxarray.open_rasterio(t, masked=True) for t in sorted(ENMAP.glob("enmap_potsdam_tile_*_0.tif"))]
    mosaic = merge_arrays(tiles)  # 224 bands, 32 × 96, NaN no-data (bands 130-135 are no-data throughout)
    memory = dx.super_resolve(mosaic, scale=2, stage="coarse")
    lazy = dx.super_resolve(mosaic.chunk({"band": -1, "y": 16, "x": 40}), scale=2, stage="coarse").compute()
    close(lazy.values, memory.values)
    assert memory.rio.crs == mosaic.rio.crs
    assert memory.rio.resolution() == (15.0, -15.0)
    archive = tmp_path / "in"
    archive.mkdir()
    mosaic.attrs.pop("_FillValue", None)  # merge_arrays leaves it in attrs and encoding; to_raster takes one
    mosaic.rio.to_raster(archive / "mosaic.tif")
    result = CliRunner().invoke(
        app, ["infer", str(archive), "-o", str(tmp_path / "out"), "--scale", "2", "--stage", "coarse"]
    )
    assert result.exit_code == 0, result.output
    with open_scene(tmp_path / "out" / "mosaic.tif") as reader:
        infer = reader.read_raw().astype(np.float32)
        assert reader.nodata is not None
        infer[infer == reader.nodata] = np.nan  # the GeoTIFF's no-data value is NaN in the DataArray
    close(memory.values, infer)


def test_on_a_two_process_local_cluster(tmp_path: Path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    da = cube_array(rows=24, cols=64)
    memory = dx.super_resolve(da, scale=4, stage="dual")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        lazy = dx.super_resolve(da.chunk({"band": -1, "y": 12, "x": 32}), scale=4, stage="dual").compute()
    close(lazy.values, memory.values)


def test_bad_inputs_are_clear_errors() -> None:
    da = cube_array()
    with pytest.raises(InputError, match="no band dimension"):
        dx.super_resolve(da.rename({"band": "channel"}), scale=2)
    with pytest.raises(InputError, match="at least 5"):
        dx.super_resolve(da.isel(band=slice(0, 4)), scale=2)
    with pytest.raises(InputError, match="not monotonic"):
        dx.super_resolve(da.isel(x=[0, 2, 1, *range(3, 28)]), scale=2)
    with pytest.warns(UserWarning, match="rechunked to one"):
        dx.super_resolve(da.chunk({"band": 8, "y": 10, "x": 14}), scale=2, stage="coarse")


def test_the_emit_example_end_to_end(tmp_path: Path) -> None:
    """``docs/examples/emit_xarray.py`` on an EMIT-structured granule written with netCDF4: the swath doubled with
    its lat/lon, fill as NaN where the input's nearest pixel was fill, and the ortho grid from the rebuilt GLT
    holding exactly the super-resolved swath's values."""
    pytest.importorskip("netCDF4")
    import runpy

    from tests.interop.producers import EMIT_FILL, write_emit_granule

    granule = tmp_path / "EMIT_L2A_RFL_001_20230401T185249_2309112_002.nc"
    cube = write_emit_granule(granule)
    example = runpy.run_path(str(Path(__file__).resolve().parents[1] / "docs" / "examples" / "emit_xarray.py"))
    swath_file, ortho_file = example["main"](granule, tmp_path / "out")
    with (
        xr.open_dataset(swath_file, engine="h5netcdf") as swath,
        xr.open_dataset(ortho_file, engine="h5netcdf") as ortho,
    ):
        rows, cols, bands = cube.shape
        assert dict(swath.sizes) == {"downtrack": 2 * rows, "crosstrack": 2 * cols, "bands": bands}
        assert swath["lat"].shape == (2 * rows, 2 * cols)
        values = swath["reflectance"].values
        fill = np.repeat(np.repeat(cube == EMIT_FILL, 2, axis=0), 2, axis=1)
        np.testing.assert_array_equal(np.isnan(values), fill)
        with xr.open_dataset(granule, engine="h5netcdf", group="location") as location:
            from dualsr_deploy.data.formats.netcdf.write import rebuild_glt

            glt_x, glt_y = rebuild_glt(location["glt_x"].values, location["glt_y"].values, 2)
        assert ortho["reflectance"].shape == (*glt_x.shape, bands)
        i, j = np.argwhere(glt_x != 0)[-1]
        np.testing.assert_array_equal(ortho["reflectance"].values[i, j], values[glt_y[i, j] - 1, glt_x[i, j] - 1])
        assert np.isnan(ortho["reflectance"].values[0, 0]).all()  # no swath pixel there


@pytest.mark.slow
def test_a_real_enmap_mosaic_on_a_two_worker_cluster_x2_coarse_and_x4_dual() -> None:
    """The whole EnMAP mosaic (224 bands, 64 × 96, NaN no-data in its bad bands) in memory and Dask-chunked on a
    2-process LocalCluster: ×2 coarse and ×4 dual equal within 1e-5 of the range, NaN in the same places."""
    rioxarray = pytest.importorskip("rioxarray")
    distributed = pytest.importorskip("dask.distributed")
    if not ENMAP.is_dir():
        pytest.skip("../shared/data/products not found")
    from rioxarray.merge import merge_arrays

    mosaic = merge_arrays([rioxarray.open_rasterio(t, masked=True) for t in sorted(ENMAP.glob("enmap_potsdam_*.tif"))])
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        for scale, stage in ((2, "coarse"), (4, "dual")):
            memory = dx.super_resolve(mosaic, scale=scale, stage=stage)
            chunked = mosaic.chunk({"band": -1, "y": 32, "x": 48})
            lazy = dx.super_resolve(chunked, scale=scale, stage=stage).compute()
            close(lazy.values, memory.values)
            assert lazy.rio.resolution() == (30.0 / scale, -30.0 / scale)
