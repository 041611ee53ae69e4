"""Every writer round-trips bit-exactly with its metadata, and never leaves a half file under the final name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dualsr_deploy.data import GeoReference, Scene, SceneMeta, read_scene, write_scene
from dualsr_deploy.errors import DataError

WAVELENGTHS = tuple(float(w) for w in range(400, 460, 10))
GEOREF = GeoReference((30.0, 0.0, 500000.0, 0.0, -30.0, 4200000.0), "EPSG:32633")
SUFFIXES = [".h5", ".npy", ".mat", ".tif", ".hdr"]


def uint16_scene(georef: GeoReference | None = GEOREF) -> Scene:
    raw = np.random.default_rng(0).integers(0, 65536, (6, 20, 24), dtype=np.uint16)
    meta = SceneMeta(
        source="sensor.dat",
        format="envi",
        dtype="uint16",
        normalisation="dtype",
        scale_factor=65535.0,
        wavelengths=WAVELENGTHS,
        georef=georef,
    )
    return Scene("t", (raw / 65535.0).astype(np.float32), meta)


def same_crs(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    rasterio = pytest.importorskip("rasterio")
    return bool(rasterio.crs.CRS.from_user_input(a) == rasterio.crs.CRS.from_user_input(b))


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("units", ["normalised", "source"])
def test_round_trip(tmp_path: Path, suffix: str, units: str) -> None:
    if suffix == ".tif":
        pytest.importorskip("rasterio")
    if suffix == ".hdr":
        pytest.importorskip("spectral")
    scene = uint16_scene()
    path = write_scene(tmp_path / f"scene{suffix}", scene, attrs={"model": "coarsr-x4", "stage": "fine"}, units=units)
    back = read_scene(path)
    np.testing.assert_array_equal(back.cube, scene.cube)  # bit-exact: every format here is lossless
    assert back.meta.dtype == ("float32" if units == "normalised" else "uint16")
    np.testing.assert_array_equal(
        back.raw() if units == "source" else back.cube, scene.raw() if units == "source" else scene.cube
    )
    assert back.meta.wavelengths == WAVELENGTHS
    assert back.meta.georef is not None
    assert back.meta.georef.transform == GEOREF.transform
    assert same_crs(back.meta.georef.crs, GEOREF.crs)
    assert back.meta.attrs["model"] == "coarsr-x4"
    assert back.meta.attrs["stage"] == "fine"
    assert back.meta.attrs["origin_source"] == "sensor.dat"


def test_plain_tiff_without_georeference(tmp_path: Path) -> None:
    """A TIFF without a grid is written through GDAL too, so that GDAL and QGIS see its band metadata and no-data
    (it used to hold them in one JSON image description only), and read back without a grid invented for it."""
    import rasterio

    scene = uint16_scene(georef=None)
    path = write_scene(tmp_path / "plain.tif", scene)
    back = read_scene(path)
    assert back.meta.format == "geotiff"
    assert back.meta.georef is None
    np.testing.assert_array_equal(back.cube, scene.cube)
    assert back.meta.wavelengths == WAVELENGTHS
    with rasterio.open(path) as dataset:
        assert dataset.crs is None
        assert [float(dataset.tags(b)["wavelength"]) for b in range(1, dataset.count + 1)] == list(WAVELENGTHS)


def test_mat_v73_round_trip(tmp_path: Path) -> None:
    scene = uint16_scene()
    path = write_scene(tmp_path / "big.mat", scene, mat_version="7.3", attrs={"model": "m"})
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    back = read_scene(path)
    assert back.meta.format == "mat-v7.3"
    np.testing.assert_array_equal(back.cube, scene.cube)
    assert back.meta.attrs["model"] == "m"


def test_mat_v5_is_h_w_c_for_matlab(tmp_path: Path) -> None:
    import scipy.io

    scene = uint16_scene()
    write_scene(tmp_path / "m.mat", scene)
    stored = scipy.io.loadmat(tmp_path / "m.mat")["cube"]
    assert stored.shape == (20, 24, 6)
    np.testing.assert_array_equal(stored[:, :, 2], scene.cube[2])


def test_geotiff_output_overlays_its_input(tmp_path: Path) -> None:
    """A ×4 SR product written with the scaled reference covers exactly the LR scene's ground."""
    rasterio = pytest.importorskip("rasterio")
    lr = uint16_scene()
    sr_cube = np.repeat(np.repeat(lr.cube, 4, axis=1), 4, axis=2)
    sr = Scene("sr", sr_cube, lr.meta.replace(georef=GEOREF.scaled(4)))
    write_scene(tmp_path / "lr.tif", lr)
    write_scene(tmp_path / "sr.tif", sr)
    with rasterio.open(tmp_path / "lr.tif") as a, rasterio.open(tmp_path / "sr.tif") as b:
        assert a.bounds == b.bounds
        assert b.res == (7.5, 7.5)


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import h5py

    target = tmp_path / "out.h5"
    original = h5py.Group.create_dataset

    def explode(self: h5py.Group, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C half-way through

    monkeypatch.setattr(h5py.Group, "create_dataset", explode)
    with pytest.raises(KeyboardInterrupt):
        write_scene(target, uint16_scene())
    assert list(tmp_path.iterdir()) == []


def test_unknown_suffix_and_units(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot write \.png"):
        write_scene(tmp_path / "x.png", uint16_scene())
    with pytest.raises(DataError, match="units"):
        write_scene(tmp_path / "x.h5", uint16_scene(), units="raw")


def test_missing_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from dualsr_deploy.errors import OptionalDependencyError

    monkeypatch.setitem(sys.modules, "rasterio", None)  # as if rasterio were not installed
    with pytest.raises(
        OptionalDependencyError, match=r"GeoTIFF needs rasterio: pip install 'dualsr-deploy\[formats\]'"
    ):
        write_scene(tmp_path / "geo.tif", uint16_scene())


def test_an_envi_header_note_wraps_whatever_the_weights_are_called(tmp_path: Path) -> None:
    """The description's note names the stage and the weights file; a long file name is wrapped, not refused as a
    header line past GDAL's limit."""
    scene = uint16_scene(georef=None)
    attrs = {"scale": "2", "stage": "dual", "weights": "my_" + "very_long_" * 12 + "checkpoint.safetensors"}
    path = write_scene(tmp_path / "x.hdr", scene, attrs=attrs)
    lines = path.read_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "checkpoint.safetensors" in path.read_text()
