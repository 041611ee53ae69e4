"""Readers on the real scenes in ../shared/data and on damaged or odd files made here."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from dualsr_deploy.data import Normalisation, Window, open_scene, read_scene
from dualsr_deploy.errors import DataError
from tests.conftest import SHARED

CAVE = SHARED / "data" / "cave"
REMOTE = SHARED / "data" / "remote"
CAVE_SCENES = sorted(p.name for p in CAVE.iterdir()) if CAVE.is_dir() else []

# name: (bands, height, width, file dtype, format)
REMOTE_SCENES = {
    "pavia_centre_crop.mat": (102, 100, 100, "float64", "mat-v7.3"),
    "muufl_crop.mat": (64, 100, 100, "float32", "mat-v7.3"),
    "san_diego_crop.mat": (189, 100, 100, "uint16", "mat-v5"),
    "abu_airport_1.mat": (205, 100, 100, "uint16", "mat-v5"),
    "houston2018_crop.mat": (48, 128, 128, "uint16", "mat-v5"),
    "samson.mat": (156, 95, 95, "float64", "mat-v5"),
}


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.skipif(not CAVE.is_dir(), reason="../shared/data/cave not found")
def test_all_cave_scenes_are_there() -> None:
    assert len(CAVE_SCENES) == 13


@pytest.mark.skipif(not CAVE.is_dir(), reason="../shared/data/cave not found")
@pytest.mark.parametrize("folder", CAVE_SCENES)
def test_cave_scene(folder: str) -> None:
    scene = read_scene(CAVE / folder)
    assert scene.shape == (31, 512, 512)
    assert scene.cube.dtype == np.float32
    assert scene.cube.min() >= 0.0
    assert scene.cube.max() <= 1.0
    assert scene.cube.max() > 0.2  # divided by the dtype's maximum, not by 2**32 or left at 0
    assert scene.meta.wavelengths == tuple(float(w) for w in range(400, 701, 10))
    watercolors = folder == "watercolors_ms"
    assert scene.meta.dtype == ("uint8" if watercolors else "uint16")
    assert scene.meta.scale_factor == (255.0 if watercolors else 65535.0)
    # Bands in order: each band is most like its neighbours (a shuffled order would break this).
    cube = scene.cube[:, ::4, ::4]
    assert correlation(cube[15], cube[16]) > correlation(cube[15], cube[30])


@pytest.mark.skipif(not CAVE.is_dir(), reason="../shared/data/cave not found")
def test_cave_window_is_the_same_pixels() -> None:
    with open_scene(CAVE / "beads_ms") as reader:
        window = reader.load(window=Window(100, 200, 40, 50))
        whole = reader.load()
    np.testing.assert_array_equal(window.cube, whole.cube[:, 100:140, 200:250])


@pytest.mark.skipif(not REMOTE.is_dir(), reason="../shared/data/remote not found")
@pytest.mark.parametrize("name", sorted(REMOTE_SCENES))
def test_remote_scene(name: str) -> None:
    bands, height, width, dtype, kind = REMOTE_SCENES[name]
    with open_scene(REMOTE / name) as reader:
        assert (reader.format, reader.shape, str(reader.dtype)) == (kind, (bands, height, width), dtype)
        scene = reader.load()
    assert scene.cube.dtype == np.float32
    assert scene.cube.min() >= 0.0
    assert scene.cube.max() <= 1.0
    assert scene.cube.max() > 0
    # The band axis is the right one: neighbouring bands of a hyperspectral image are nearly identical images,
    # which rows or columns of it are not.
    cube = scene.cube
    neighbours = np.mean([correlation(cube[i], cube[i + 1]) for i in range(0, bands - 1, 7)])
    assert neighbours > 0.95


@pytest.mark.skipif(not REMOTE.is_dir(), reason="../shared/data/remote not found")
def test_houston_orientation_matches_its_rgb_image() -> None:
    """Houston's 512×512 RGB image covers the same ground as its 128×128 cube: as read, they must overlay."""
    cube = read_scene(REMOTE / "houston2018_crop.mat").cube.mean(0)
    rgb = read_scene(REMOTE / "houston2018_crop.mat", key="rgbImg", layout="hwc").cube.mean(0)
    small = rgb.reshape(128, 4, 128, 4).mean(axis=(1, 3))
    assert correlation(small, cube) > 0.6
    assert correlation(small, cube.T) < 0.3


@pytest.mark.skipif(not REMOTE.is_dir(), reason="../shared/data/remote not found")
@pytest.mark.parametrize("name", ["pavia_centre_crop.mat", "muufl_crop.mat"])
def test_v73_orientation_matches_its_ground_truth(name: str) -> None:
    """The v7.3 files' label maps (read the MATLAB way) explain the cube's mean image far better than transposed.

    Measured: Pavia 0.203 vs 0.0015, MUUFL 0.196 vs 0.029; the bar (3×) leaves room and still fails transposed.
    """
    image = read_scene(REMOTE / name).cube.mean(0)
    with h5py.File(REMOTE / name, "r") as handle:
        labels = np.asarray(handle["groundtruth"]).T  # h5py reverses MATLAB's axes

    def explained(lab: np.ndarray) -> float:
        within = sum(image[lab == v].var() * np.count_nonzero(lab == v) for v in np.unique(lab))
        return float(1 - within / image.size / image.var())

    assert explained(labels) > 3 * explained(labels.T)


@pytest.mark.skipif(not REMOTE.is_dir(), reason="../shared/data/remote not found")
def test_key_choice_is_reported_and_can_be_overridden() -> None:
    with open_scene(REMOTE / "samson.mat") as reader:
        assert reader.key == "SamSon"
        assert any("largest 3-D" in note and "'A'" in note for note in reader.notes)
    with open_scene(REMOTE / "samson.mat", key="A") as reader:
        assert reader.shape == (3, 95, 95)


@pytest.mark.skipif(not REMOTE.is_dir(), reason="../shared/data/remote not found")
def test_wrong_key_names_the_file_and_the_choices() -> None:
    with pytest.raises(DataError, match=r"samson\.mat.*no array 'cube'.*'SamSon'"):
        open_scene(REMOTE / "samson.mat", key="cube")


@pytest.mark.skipif(not REMOTE.is_dir(), reason="../shared/data/remote not found")
def test_sensor_units_normalise_by_choice() -> None:
    by_dtype = read_scene(REMOTE / "san_diego_crop.mat", normalise=Normalisation("dtype"))
    by_max = read_scene(REMOTE / "san_diego_crop.mat")  # auto: integer sensor units divide by their own maximum
    assert by_dtype.meta.scale_factor == 65535.0
    assert by_max.meta.normalisation == "max"
    assert by_max.meta.scale_factor == 7136.0  # the crop's maximum (README: 20–7136)
    assert by_max.cube.max() == 1.0
    np.testing.assert_array_equal(by_max.raw(), by_dtype.raw())  # both go back to the same sensor units


def test_two_dimensional_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flat.mat"
    scipy.io.savemat(path, {"image": np.zeros((20, 20))})
    with pytest.raises(DataError, match=r"flat\.mat.*no 3-D numeric array"):
        open_scene(path)


def test_nan_marks_a_pixel_invalid(tmp_path: Path) -> None:
    cube = np.full((5, 8, 8), 0.5)
    cube[2, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", cube)
    scene = read_scene(tmp_path / "nan.npy")
    assert scene.valid is not None
    assert int((~scene.valid).sum()) == 1
    assert not scene.valid[3, 3]
    assert scene.cube[:, 3, 3].tolist() == [0.0] * 5
    assert "1 pixels are no-data or not finite" in " ".join(scene.meta.notes)


@pytest.mark.parametrize("suffix", [".h5", ".mat", ".npy"])
def test_truncated_file_is_a_clear_error(tmp_path: Path, suffix: str) -> None:
    from dualsr_deploy.data import Scene, SceneMeta, write_scene

    scene = Scene("s", np.random.default_rng(0).random((6, 64, 64), dtype=np.float32), SceneMeta("x", "npy"))
    path = write_scene(tmp_path / f"whole{suffix}", scene, mat_version="5" if suffix == ".mat" else None)
    data = path.read_bytes()
    broken = tmp_path / f"broken{suffix}"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"broken"):
        read_scene(broken)


def test_empty_and_unknown_files(tmp_path: Path) -> None:
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        open_scene(tmp_path / "empty.h5")
    (tmp_path / "notes.xyz").write_text("hello")
    with pytest.raises(DataError, match="not a recognised scene file"):
        open_scene(tmp_path / "notes.xyz")
    with pytest.raises(DataError, match="no such file"):
        open_scene(tmp_path / "missing.mat")


def test_layout_option_for_numpy(tmp_path: Path) -> None:
    cube = np.random.default_rng(1).random((7, 9, 5)).astype(np.float32)  # C, H, W
    np.save(tmp_path / "hwc.npy", np.transpose(cube, (1, 2, 0)))
    scene = read_scene(tmp_path / "hwc.npy", layout="hwc")
    np.testing.assert_array_equal(scene.cube, cube)
    window = read_scene(tmp_path / "hwc.npy", layout="hwc", window=Window(2, 1, 4, 3))
    np.testing.assert_array_equal(window.cube, cube[:, 2:6, 1:4])
    with pytest.raises(DataError, match="layout must be one of"):
        read_scene(tmp_path / "hwc.npy", layout="xyz")


def test_window_outside_the_scene(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.zeros((5, 8, 8), np.float32))
    with pytest.raises(DataError, match="outside"):
        read_scene(tmp_path / "c.npy", window=Window(4, 4, 8, 2))


def test_windows_use_the_whole_scene_factor(tmp_path: Path) -> None:
    """A window under a statistics rule (max) is divided by the scene's maximum, not the window's."""
    cube = np.random.default_rng(2).random((5, 16, 16)) * 3000
    cube[0, 0, 0] = 4000  # the maximum lies outside the windows below
    np.save(tmp_path / "units.npy", cube)
    with open_scene(tmp_path / "units.npy") as reader:
        whole = reader.load(Normalisation("max"))
        for window in (Window(4, 4, 8, 8), Window(8, 0, 8, 16)):
            part = reader.load(Normalisation("max"), window)
            assert part.meta.scale_factor == 4000.0
            np.testing.assert_array_equal(part.cube, whole.cube[:, window.rows, window.cols])


def test_matlab_unmixing_layout(tmp_path: Path) -> None:
    """Y (bands × pixels, MATLAB column order) with nRow/nCol and maxValue, beside a 3-D abundance map."""
    rng = np.random.default_rng(0)
    cube = rng.integers(0, 5000, size=(7, 4, 6)).astype(np.uint16)  # bands, rows, columns
    y = cube.transpose(0, 2, 1).reshape(7, 24)  # pixel n = row + column·rows
    abundances = rng.random((4, 6, 3))
    path = tmp_path / "jasper_like.mat"
    scipy.io.savemat(path, {"Y": y, "nRow": np.uint8(4), "nCol": np.uint8(6), "maxValue": np.uint16(5000),
                            "A": abundances})  # fmt: skip
    with open_scene(path) as reader:
        assert reader.shape == (7, 4, 6)
        scene = reader.load()
        assert any("unmixing" in note for note in reader.notes)
    np.testing.assert_allclose(scene.cube, cube / 5000, rtol=1e-6)
    # Without the size variables it is not a cube: the 3-D abundance map is what is there.
    scipy.io.savemat(path, {"Y": y, "A": abundances})
    with open_scene(path) as reader:
        assert reader.shape == (3, 4, 6)


def test_the_unmixing_scenes_of_remote_train(shared_data: Path) -> None:
    for name, shape in (("Moffett_vca", (189, 50, 50)), ("jasperRidge2_R198", (198, 100, 100))):
        with open_scene(shared_data / "remote_train" / f"{name}.mat") as reader:
            assert reader.shape == shape
            cube = reader.load().cube
        assert cube.min() >= 0.0
        assert cube.max() <= 1.0
        band = cube[shape[0] // 2]  # neighbouring pixels of a real image correlate both ways
        assert np.corrcoef(band[1:].ravel(), band[:-1].ravel())[0, 1] > 0.9
        assert np.corrcoef(band[:, 1:].ravel(), band[:, :-1].ravel())[0, 1] > 0.9


@pytest.mark.parametrize("pattern", ["clean", "band empty in one strip", "band empty everywhere", "no-data rows"])
def test_statistics_from_strips_are_the_whole_reads(tmp_path: Path, pattern: str) -> None:
    """A streamed scene's bad bands, normalisation factor and band floors, settled in one pass over row strips, are
    the ones a whole read settles: with a band that has no valid value in one strip only (that strip's pixels are
    then all invalid), a band with none anywhere (bad), and strips of no-data."""
    import h5py

    from dualsr_deploy.data.archive import open_archive
    from dualsr_deploy.data.normalise import Normalisation
    from dualsr_deploy.data.validity import Masking

    rng = np.random.default_rng(7)
    cube = (rng.random((6, 40, 9)) * 3 - 0.2).astype(np.float32)  # some values below 0: band floors
    if pattern == "band empty in one strip":
        cube[2, 8:16] = np.nan
    elif pattern == "band empty everywhere":
        cube[4] = np.nan
    elif pattern == "no-data rows":
        cube[:, 0:8] = np.nan
        cube[1, 20:24, 3] = np.nan
    archive = tmp_path / "lr"
    archive.mkdir()
    with h5py.File(archive / "a.h5", "w") as handle:
        handle.create_dataset("cube", data=cube)
    (entry,) = open_archive(archive).entries
    rule = Normalisation()
    with open_archive(archive).open(entry) as reader:
        reader.resolve_in_strips(rule, rows=8)
        strips = reader._resolved[(rule, Masking())]
    with open_archive(archive).open(entry) as reader:
        reader.load(rule)
        whole = reader._resolved[(rule, Masking())]
    assert strips == whole


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("all no-data", "no band holds a valid value"), ("no pixel whole", "no pixel is valid in every good band")],
)
def test_statistics_from_strips_refuse_what_a_whole_read_refuses(tmp_path: Path, pattern: str, message: str) -> None:
    """A scene whose values lie about being data (every value NaN; every band valid somewhere, in different strips,
    but no pixel valid in all) fails from the strip pass with the whole read's reason."""
    import h5py

    from dualsr_deploy.data.archive import open_archive
    from dualsr_deploy.data.normalise import Normalisation
    from dualsr_deploy.errors import DataError

    cube = np.full((4, 24, 5), np.nan, dtype=np.float32)
    if pattern == "no pixel whole":
        cube[:2, :8] = 0.5  # bands 0-1 valid in the first strip only, bands 2-3 in the last
        cube[2:, 16:] = 0.5
    archive = tmp_path / "lr"
    archive.mkdir()
    with h5py.File(archive / "a.h5", "w") as handle:
        handle.create_dataset("cube", data=cube)
    (entry,) = open_archive(archive).entries
    with open_archive(archive).open(entry) as reader, pytest.raises(DataError, match=message):
        reader.resolve_in_strips(Normalisation(), rows=8)


@pytest.mark.parametrize("layout", ["chw", "hwc", "cwh", "whc", "hcw", "wch"])
def test_a_window_in_any_layout_comes_back_as_contiguous_bands_rows_columns(layout: str) -> None:
    """``read_window`` gives the ``(C, h, w)`` values of the window, C-contiguous, whatever the axis order (bands-last
    layouts are transposed a row at a time, the others at once)."""
    from dualsr_deploy.data.formats.reader import read_window

    cube = np.random.default_rng(1).random((7, 9, 11), dtype=np.float32)
    stored = np.ascontiguousarray(np.transpose(cube, ["chw".index(axis) for axis in layout]))
    for window, expected in ((None, cube), (Window(2, 3, 5, 6), cube[:, 2:7, 3:9])):
        got = read_window(stored, layout, window)
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)
