"""AVIRIS-3 L2A orthorectified reflectance (``*_RFL_ORT.nc``): no sample or format document could be had here, so
these files follow the structure the issue gives (a group ``reflectance`` with ``reflectance`` and ``wavelength``),
with CF coordinates and a GDAL ``GeoTransform`` on a grid-mapping variable, filled with the real AVIRIS-NG radiance
cube of ``../shared/data/products`` scaled into reflectance-like values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data.formats import open_scene
from tests.conftest import SHARED

runner = CliRunner()
AVIRIS = SHARED / "data" / "products" / "avirisng_l1b_envi" / "ang20160910t185702_2rdn_img.hdr"
needs_sample = pytest.mark.skipif(not AVIRIS.is_file(), reason="../shared/data/products not found")


def make_ort(path: Path) -> np.ndarray:
    """(bands, northing, easting) float32 with −9999 fill in a corner. Returns the cube."""
    import h5py

    with open_scene(AVIRIS) as reader:
        cube = (reader.read_raw() / 20.0).astype(np.float32)
        wavelengths = np.asarray(reader.wavelengths)
    cube[:, :3, :4] = -9999
    _bands, rows, cols = cube.shape
    with h5py.File(path, "w") as handle:
        group = handle.create_group("reflectance")
        data = group.create_dataset("reflectance", data=cube)
        data.attrs["_FillValue"] = np.float32(-9999)
        data.attrs["grid_mapping"] = "transverse_mercator"
        group.create_dataset("wavelength", data=wavelengths)
        handle.create_dataset("northing", data=3813729.0 - 15.0 * np.arange(rows))
        handle.create_dataset("easting", data=353128.0 + 15.0 * np.arange(cols))
        mapping = handle.create_dataset("transverse_mercator", data=np.int32(0))
        mapping.attrs["GeoTransform"] = "353120.5 15 0 3813736.5 0 -15"
        mapping.attrs["spatial_ref"] = 'PROJCS["WGS 84 / UTM zone 11N"]'
    return cube


@needs_sample
def test_an_aviris3_file_goes_through_infer_and_comes_back_in_its_structure(tmp_path: Path) -> None:
    import h5py

    archive = tmp_path / "av3"
    archive.mkdir()
    name = "AV320231009t191637_005_L2A_OE_main_27577724_RFL_ORT.nc"
    cube = make_ort(archive / name)
    with open_scene(archive / name) as reader:
        scene = reader.load()
    assert reader.format == "aviris3"
    assert scene.cube.shape == cube.shape
    assert scene.meta.georef is not None
    assert scene.meta.georef.transform == (15.0, 0.0, 353120.5, 0.0, -15.0, 3813736.5)
    result = runner.invoke(
        app, ["infer", str(archive), "-o", str(tmp_path / "sr"), "--scale", "2", "--stage", "coarse"]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "sr" / name, "r") as sr, h5py.File(archive / name, "r") as lr:
        out = sr["reflectance/reflectance"][()]
        assert out.shape == (cube.shape[0], 2 * cube.shape[1], 2 * cube.shape[2])
        assert np.all(out[:, :6, :8] == -9999)
        assert np.all(out[:, 6:, 8:] != -9999)
        np.testing.assert_array_equal(sr["reflectance/wavelength"][()], lr["reflectance/wavelength"][()])
        assert sr["easting"].shape == (2 * cube.shape[2],)
        np.testing.assert_allclose(sr["easting"][:2], [353128.0 - 3.75, 353128.0 + 3.75])
        assert sr["transverse_mercator"].attrs["GeoTransform"] == "353120.5 7.5 0.0 3813736.5 0.0 -7.5"
