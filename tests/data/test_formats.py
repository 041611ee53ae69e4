"""The format table, row by row (as timm's tests run every registered model): every format that writes round-trips
whole and in strips, bit-exactly, through our reader and through the tool its users open it with; every format
that reads is detected as itself; the table's derived sets agree with its rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dualsr_deploy.data import Scene, SceneMeta, read_scene, write_scene
from dualsr_deploy.data.formats import (
    KEYED_FORMATS,
    OPTIONS,
    SCENE_SUFFIXES,
    TABLE,
    WRITE_SUFFIXES,
    detect_format,
    open_strips,
    output_suffix,
    writing,
)
from dualsr_deploy.data.scene import GeoReference
from dualsr_deploy.errors import DataError
from tests.interop.producers import write_emit_granule

WRITERS = [(row.name, suffix) for row in TABLE for suffix in row.writes]
GEOREF = GeoReference((30.0, 0.0, 500000.0, 0.0, -30.0, 4200000.0), "EPSG:32633")


def lab_scene() -> Scene:
    """A float32 cube with wavelengths and a grid: what every format but NetCDF can be written from."""
    cube = np.random.default_rng(3).random((6, 21, 18), dtype=np.float32)
    wavelengths = tuple(float(w) for w in range(450, 510, 10))
    meta = SceneMeta("lab.h5", "hdf5", dtype="float32", wavelengths=wavelengths, georef=GEOREF)
    return Scene("lab", cube, meta)


def source_scene(row_name: str, folder: Path) -> Scene:
    """A scene the row can write: NetCDF rebuilds the product it came from, so an EMIT granule for it."""
    if row_name != "emit":
        return lab_scene()
    granule = folder / "EMIT_L2A_RFL_001_20250101T000000_2500100_001.nc"
    write_emit_granule(granule, rows=21, cols=18, bands=8, fill_cols=0)
    return read_scene(granule)


def users_tool(path: Path) -> np.ndarray:
    """The cube ``(C, H, W)`` as the format's own users read it: h5py, NumPy, scipy/h5py for MATLAB, rasterio,
    Spectral Python, xarray (Zarr, and h5netcdf for NetCDF)."""
    name = path.name.lower()
    if name.endswith(".h5") or name.endswith(".hdf5"):
        import h5py

        with h5py.File(path, "r") as handle:
            return np.asarray(handle["cube"])
    if name.endswith(".npy"):
        return np.load(path)
    if name.endswith(".mat"):
        with path.open("rb") as handle:
            handle.seek(512)
            hdf5 = handle.read(8) == b"\x89HDF\r\n\x1a\n"
        if hdf5:  # v7.3: MATLAB's H × W × C seen reversed
            import h5py

            with h5py.File(path, "r") as handle:
                return np.transpose(np.asarray(handle["cube"]), (0, 2, 1))
        import scipy.io

        return np.transpose(scipy.io.loadmat(path)["cube"], (2, 0, 1))
    if name.endswith((".tif", ".tiff")):
        rasterio = pytest.importorskip("rasterio")
        with rasterio.open(path) as dataset:
            return np.asarray(dataset.read())
    if name.endswith(".hdr"):
        envi = pytest.importorskip("spectral.io.envi")
        return np.transpose(np.asarray(envi.open(str(path)).load()), (2, 0, 1))
    if name.endswith(".zarr"):
        xr = pytest.importorskip("xarray")
        with xr.open_zarr(path) as dataset:
            return np.asarray(dataset["cube"].values)
    if name.endswith(".nc"):
        xr = pytest.importorskip("xarray")
        with xr.open_dataset(path, engine="h5netcdf") as dataset:
            return np.transpose(np.asarray(dataset["reflectance"].values), (2, 0, 1))
    raise AssertionError(f"no user's tool for {path}")


@pytest.mark.parametrize(("row_name", "suffix"), WRITERS, ids=[f"{n}{s}" for n, s in WRITERS])
def test_every_format_round_trips_whole_and_in_strips(tmp_path: Path, row_name: str, suffix: str) -> None:
    if suffix in (".tif", ".tiff", ".cog.tif"):
        pytest.importorskip("rasterio")
    if suffix == ".zarr":
        pytest.importorskip("zarr")
    scene = source_scene(row_name, tmp_path)
    whole = write_scene(tmp_path / f"whole{suffix}", scene, attrs={"stage": "test"})
    data = scene.normalised()  # what write_scene writes: bad bands' values kept
    c, h, w = data.shape
    with open_strips(tmp_path / f"strips{suffix}", (c, h, w), scene.meta, {"stage": "test"}) as writer:
        for first in range(0, h, 8):  # strips of 8, 8 and 5 rows
            writer.write(first, data[:, first : first + 8])
        strips = writer.commit()
    for path in (whole, strips):
        assert writing(path).name == row_name
        np.testing.assert_array_equal(users_tool(path), data)  # what its users read
        if suffix == ".zarr":
            continue  # written for xarray; this package reads no Zarr
        back = read_scene(path)  # and ours, with the metadata
        np.testing.assert_array_equal(back.cube, scene.cube)
        assert back.meta.wavelengths is not None
        np.testing.assert_allclose(back.meta.wavelengths, np.asarray(scene.meta.wavelengths))
        assert back.meta.attrs.get("stage") == "test"


@pytest.mark.parametrize(("row_name", "suffix"), WRITERS, ids=[f"{n}{s}" for n, s in WRITERS])
def test_a_written_file_is_detected_as_a_format_that_reads_it(tmp_path: Path, row_name: str, suffix: str) -> None:
    if suffix in (".tif", ".tiff", ".cog.tif"):
        pytest.importorskip("rasterio")
    if suffix == ".zarr":
        pytest.skip("Zarr is written, not read, by this package (xarray reads it)")
    path = write_scene(tmp_path / f"scene{suffix}", source_scene(row_name, tmp_path))
    detected = detect_format(path)
    reader_row = next(row for row in TABLE if row.name == detected and row.reader is not None)
    assert reader_row.output is not None
    assert writing(Path(f"x{reader_row.output}")).option is not None  # its scenes go back out by default
    expected = {".mat": {"mat-v5", "mat-v7.3"}, ".tif": {"geotiff"}, ".tiff": {"geotiff"}, ".cog.tif": {"geotiff"}}
    assert detected in expected.get(suffix, {row_name})


def test_the_tables_derived_sets_agree_with_its_rows() -> None:
    names = [row.name for row in TABLE]
    assert {"cave", "envi", "geotiff", "tiff", "hdf5", "emit", "aviris3", "prisma", "npy", "npz"} <= set(names)
    assert all(row.sniff is not None and row.reader is not None for row in TABLE if row.scene_suffixes)
    assert all(row.strips is not None for row in TABLE if row.writes)
    assert {suffix for row in TABLE for suffix in row.scene_suffixes} == SCENE_SUFFIXES
    assert set(WRITE_SUFFIXES) >= {".h5", ".npy", ".mat", ".tif", ".cog.tif", ".hdr", ".nc", ".zarr"}
    assert {"mat-v5", "mat-v7.3", "hdf5", "npy", "npz"} == KEYED_FORMATS
    assert set(OPTIONS) == {"h5", "npy", "mat", "tif", "cog", "envi", "nc", "zarr"}
    for row in TABLE:  # every format read has an output suffix some row writes
        if row.reader is not None:
            assert row.output is not None
            assert any(row.output in other.writes for other in TABLE)


def test_suffixes_choose_the_longest_match_and_unknown_ones_are_refused() -> None:
    assert writing(Path("a.cog.tif")).name == "cog"
    assert writing(Path("a.TIF")).name == "geotiff"
    assert output_suffix("envi") == ".hdr"
    assert output_suffix("emit", "zarr") == ".zarr"
    assert output_suffix("cave") == ".h5"
    with pytest.raises(DataError, match=r"cannot write \.xyz"):
        writing(Path("a.xyz"))
    with pytest.raises(DataError, match="unknown format"):
        output_suffix("envi", "gif")


def test_netcdf_refuses_a_scene_that_is_not_its_product(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="NetCDF output rebuilds"):
        write_scene(tmp_path / "x.nc", lab_scene())
    assert not list(tmp_path.iterdir())  # nothing left behind


def _row(name: str) -> Any:
    return next(row for row in TABLE if row.name == name)


def test_streamed_matlab_is_v73_and_whole_is_v5(tmp_path: Path) -> None:
    scene = lab_scene()
    whole = write_scene(tmp_path / "whole.mat", scene)
    assert detect_format(whole) == "mat-v5"
    with open_strips(tmp_path / "strips.mat", scene.cube.shape, scene.meta, {}) as writer:
        writer.write(0, scene.cube)
        strips = writer.commit()
    assert detect_format(strips) == "mat-v7.3"
    assert _row("mat-v5").streamed_note is not None
