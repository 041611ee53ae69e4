"""Validity: no-data pixels, bad bands, segments, the fill, and how readers and writers keep them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dualsr_deploy.data import read_scene
from dualsr_deploy.data.formats import open_scene, write_scene
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.data.validity import BadBandSpec, Masking, fill_invalid, find_validity, nearest_up, segments
from dualsr_deploy.errors import DataError, InputError


def test_bad_band_spec_reads_indices_and_wavelengths() -> None:
    spec = BadBandSpec.parse("0-2, 7,1340-1450nm")
    wavelengths = [400.0 + 100 * i for i in range(12)]  # 400 … 1500 nm
    assert spec.resolve(12, wavelengths, "s") == {0, 1, 2, 7, 10}
    with pytest.raises(InputError, match="cannot read 'x'"):
        BadBandSpec.parse("1,x")
    with pytest.raises(InputError, match="runs backwards"):
        BadBandSpec.parse("5-2")
    with pytest.raises(DataError, match=r"scene\.h5: --bad-bands '0-20' names band 20, the scene has 12"):
        BadBandSpec.parse("0-20").resolve(12, wavelengths, "scene.h5")
    with pytest.raises(DataError, match="declares none"):
        BadBandSpec.parse("900-1000nm").resolve(12, None, "s")


def test_validity_segments_and_fill() -> None:
    raw = np.ones((8, 4, 5), dtype=np.float32)
    raw[:, 0, 0] = -9999
    raw[3] = np.nan  # a band with no valid value is bad
    raw[5, 1, 1] = np.inf
    validity = find_validity(raw, [-9999.0], {6}, "s")
    assert validity.bad_bands == (3, 6)
    assert not validity.valid[0, 0]
    assert not validity.valid[1, 1]
    assert validity.valid.sum() == 18
    assert segments(validity.good) == [(0, 3), (4, 6), (7, 8)]
    with pytest.raises(DataError, match="no band holds a valid value"):
        find_validity(np.full((5, 2, 2), -9999.0), [-9999.0], set(), "s")
    checker = np.full((5, 2, 2), -9999.0)
    checker[:3, 0, 0] = checker[3:, 1, 1] = 1.0  # every band has a valid value, no pixel has all
    with pytest.raises(DataError, match="no pixel is valid in every good band"):
        find_validity(checker, [-9999.0], set(), "s")
    cube = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    valid = np.ones((3, 3), dtype=bool)
    valid[:, 0] = False
    filled = fill_invalid(cube, valid)
    np.testing.assert_array_equal(filled[:, :, 0], cube[:, :, 1])  # the nearest valid column
    np.testing.assert_array_equal(filled[:, :, 1:], cube[:, :, 1:])
    assert nearest_up(np.array([[1, 2]]), 2).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2]]


def scene_with_fill(tmp_path: Path, suffix: str, dtype: str = "float32") -> tuple[Path, np.ndarray]:
    """A 12-band scene written in its source units with a declared no-data value, a no-data corner and a bad
    band, through the package's writers; the raw array it holds."""
    rng = np.random.default_rng(0)
    raw = (rng.uniform(100, 3000, size=(12, 10, 8))).astype(dtype)
    raw[:, :3, :2] = -9999
    raw[4] = -1  # flagged bad, holding a flag value
    meta = SceneMeta(
        "made",
        "npy",
        dtype=dtype,
        scale_factor=1.0,
        nodata=-9999.0,
        bad_bands=(4,),
        wavelengths=tuple(400.0 + 10 * i for i in range(12)),
        fwhm=tuple(9.5 for _ in range(12)),
    )
    valid = np.ones((10, 8), dtype=bool)
    valid[:3, :2] = False
    cube = np.where(valid, raw, 0).astype(np.float32) / 3000
    cube[4] = 0
    scene = Scene("made", cube.astype(np.float32), meta.replace(scale_factor=3000.0), valid=valid, passthrough=raw[[4]])
    path = write_scene(tmp_path / f"made{suffix}", scene, units="source")
    return path, raw


@pytest.mark.parametrize("suffix", [".hdr", ".h5", ".npy", ".mat"])
def test_no_data_and_bad_bands_round_trip(tmp_path: Path, suffix: str) -> None:
    path, raw = scene_with_fill(tmp_path, suffix)
    with open_scene(path) as reader:
        stored = reader.read_raw()
        scene = reader.load()
    np.testing.assert_allclose(
        stored[scene.good][:, ~np.isin(stored[0], [-9999])], raw[scene.good][:, raw[0] != -9999], rtol=1e-6
    )
    assert np.all(stored[:, :3, :2][scene.good] == -9999)
    np.testing.assert_array_equal(stored[4], raw[4])  # the bad band exactly
    assert scene.meta.bad_bands == (4,)
    assert scene.meta.nodata == -9999.0
    assert scene.valid is not None
    assert int((~scene.valid).sum()) == 6
    assert scene.meta.fwhm == tuple(9.5 for _ in range(12))


def test_an_integer_output_with_invalid_pixels_needs_a_no_data_value(tmp_path: Path) -> None:
    valid = np.ones((4, 4), dtype=bool)
    valid[0, 0] = False
    scene = Scene(
        "i", np.zeros((5, 4, 4), np.float32), SceneMeta("i", "npy", dtype="uint16", scale_factor=100.0), valid=valid
    )
    with pytest.raises(DataError, match="--nodata"):
        write_scene(tmp_path / "i.h5", scene, units="source")
    float_scene = Scene("f", scene.cube, SceneMeta("f", "npy", dtype="float32"), valid=valid)
    written = read_scene(write_scene(tmp_path / "f.npy", float_scene, units="source"), normalise=None)
    assert written.valid is not None  # NaN where the input declared no value
    assert not written.valid[0, 0]


def test_integer_sensor_data_is_scaled_by_its_own_maximum_and_cave_by_65535(tmp_path: Path) -> None:
    raw = np.full((6, 4, 4), 500, dtype=np.uint16)
    raw[:, 0, 0] = 7000
    np.save(tmp_path / "dn.npy", raw)
    scene = read_scene(tmp_path / "dn.npy")
    assert scene.meta.normalisation == "max"
    assert scene.meta.scale_factor == 7000.0
    assert scene.cube.max() == 1.0


def test_masking_options_reach_the_reader(tmp_path: Path) -> None:
    raw = np.full((6, 4, 4), 0.5, dtype=np.float32)
    raw[:, 1, 1] = 0.0
    np.save(tmp_path / "z.npy", raw)
    with open_scene(tmp_path / "z.npy") as reader:
        scene = reader.load(masking=Masking(nodata=(0.0,), bad_bands=BadBandSpec.parse("5")))
    assert scene.valid is not None
    assert not scene.valid[1, 1]
    assert scene.meta.bad_bands == (5,)
    assert scene.meta.nodata == 0.0


def test_envi_map_info_rotation_round_trips_and_scales(tmp_path: Path) -> None:
    """A rotated grid (as AVIRIS-NG flight lines come, ``rotation=-66``) read the way GDAL reads it, written back
    with its rotation, and scaled by 1/s for an output."""
    import math

    from dualsr_deploy.data.formats.envi.read import PROJECTION_KEY, _map_info
    from dualsr_deploy.data.scene import GeoReference

    values = ["UTM", "1", "1", "736600.089", "4078126.750", "2.7", "2.7", "12", "North", "WGS-84", "rotation=-66"]
    georef = _map_info(values, tmp_path / "x.hdr")
    assert georef is not None
    a, b, c, d, e, f = georef.transform
    theta = math.radians(-66)
    assert (a, b, d, e) == pytest.approx(
        (2.7 * math.cos(theta), -2.7 * math.sin(theta), -2.7 * math.sin(theta), -2.7 * math.cos(theta))
    )
    assert (c, f) == (736600.089, 4078126.750)
    meta = SceneMeta("r", "envi", georef=georef, attrs={PROJECTION_KEY: "UTM|12|North|WGS-84"})
    scene = Scene("r", np.zeros((5, 4, 4), np.float32), meta)
    back = read_scene(
        write_scene(tmp_path / "r.hdr", scene.__class__("r", scene.cube, meta.replace(georef=georef.scaled(2))))
    )
    assert back.meta.georef is not None
    np.testing.assert_allclose(
        back.meta.georef.transform, GeoReference(georef.transform).scaled(2).transform, rtol=1e-12
    )
    header = (tmp_path / "r.hdr").read_text()
    assert "map info = {UTM, 1, 1, 736600.089" in header
    assert "12, North, WGS-84, rotation=-66" in header


@pytest.mark.parametrize("suffix", [".hdr", ".h5"])
def test_per_band_gains_and_offsets_are_honoured_and_written_back(tmp_path: Path, suffix: str) -> None:
    """ENVI ``data gain values``/``data offset values`` (GeoTIFF band scales/offsets alike): the network sees
    physical values (gain · stored + offset), the output goes back to the stored units with the same gains."""
    stored = np.random.default_rng(3).integers(100, 4000, size=(6, 5, 4)).astype(np.uint16)
    gains = tuple(0.0001 * (1 + i) for i in range(6))
    offsets = tuple(-0.01 * i for i in range(6))
    physical = stored * np.asarray(gains)[:, None, None] + np.asarray(offsets)[:, None, None]
    meta = SceneMeta("g", "envi", dtype="uint16", scale_factor=1.0, band_gains=gains, band_offsets=offsets)
    scene = Scene("g", physical.astype(np.float32), meta)
    path = write_scene(tmp_path / f"g{suffix}", scene, units="source")
    with open_scene(path) as reader:
        np.testing.assert_array_equal(reader.read_raw(), stored)
        back = reader.load()
    assert back.meta.band_gains == pytest.approx(gains)
    assert back.meta.band_offsets == pytest.approx(offsets)
    np.testing.assert_allclose(back.cube * back.meta.scale_factor, physical, atol=1e-6)
