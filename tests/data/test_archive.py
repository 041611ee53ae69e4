"""Archives: folders, globs, list files, multi-scene HDF5; sizes up front; broken entries reported, not fatal."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from dualsr_deploy.data import Scene, SceneMeta, open_archive, write_scene
from dualsr_deploy.errors import DataError
from tests.conftest import SHARED


def cube(seed: int, bands: int = 5, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).random((bands, size, size), dtype=np.float32)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    write_scene(root / "a.h5", Scene("a", cube(0), SceneMeta("a", "npy")))
    write_scene(root / "flight" / "b.npy", Scene("b", cube(1, size=12), SceneMeta("b", "npy")))
    write_scene(root / "flight" / "c.mat", Scene("c", cube(2), SceneMeta("c", "npy")))
    (root / "flight" / "notes.txt").write_text("not a scene")
    (root / "broken.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    return root


def test_folder_is_searched_recursively_with_sizes_up_front(folder: Path) -> None:
    archive = open_archive(folder)
    assert [e.name for e in archive.entries] == ["a", "broken", "flight/b", "flight/c"]
    assert archive.entries[2].shape == (5, 12, 12)
    assert archive.nbytes == 4 * 5 * (8 * 8 * 2 + 12 * 12)
    assert [e.name for e in archive.failed] == ["broken"]
    assert "broken.mat" in (archive.failed[0].error or "")


def test_iteration_reports_a_broken_entry_and_goes_on(folder: Path) -> None:
    results = list(open_archive(folder).scenes())
    assert [r.entry.name for r in results] == ["a", "broken", "flight/b", "flight/c"]
    assert results[1].scene is None
    assert "broken.mat" in (results[1].error or "")
    assert results[3].scene is not None
    np.testing.assert_array_equal(results[3].scene.cube, cube(2))


def test_file_that_breaks_after_probing(folder: Path) -> None:
    archive = open_archive(folder)
    (folder / "a.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # damaged between listing and reading
    results = list(archive.scenes())
    assert results[0].scene is None
    assert "a.h5" in (results[0].error or "")
    assert results[2].scene is not None


def test_glob(folder: Path) -> None:
    archive = open_archive(str(folder / "**" / "*.npy"))
    assert [e.name for e in archive.entries] == ["flight/b"]
    with pytest.raises(DataError, match="matches no files"):
        open_archive(str(folder / "*.tif"))


def test_list_file_and_the_archive_root(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.npy"
    np.save(outside, cube(3))
    listing = folder / "scenes.txt"
    listing.write_text("# training scenes\na.h5\nflight/c.mat\n\n../elsewhere.npy\n")
    archive = open_archive(listing)
    assert [e.name for e in archive.readable] == ["a", "flight/c"]
    assert len(archive.failed) == 1
    assert "outside the archive root" in (archive.failed[0].error or "")
    widened = open_archive(listing, root=tmp_path)
    assert not widened.failed


def test_multi_scene_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "collection.h5"
    with h5py.File(path, "w") as handle:
        handle["scenes/one"] = cube(0)
        handle["scenes/two"] = cube(1, bands=7)
        handle["mask"] = np.zeros((8, 8))
    archive = open_archive(path)
    assert [(e.name, e.key, e.shape) for e in archive.entries] == [
        ("collection/scenes/one", "scenes/one", (5, 8, 8)),
        ("collection/scenes/two", "scenes/two", (7, 8, 8)),
    ]
    scenes = [r.scene for r in archive.scenes()]
    assert scenes[1] is not None
    np.testing.assert_array_equal(scenes[1].cube, cube(1, bands=7))


def test_unreadable_folder_is_reported(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = folder / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        if Path(path) == locked:  # what a folder without read permission does (also when tests run as root)
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    archive = open_archive(folder)
    assert any("locked" in e.name and "cannot list" in (e.error or "") for e in archive.failed)
    assert len(archive.readable) == 3


def test_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no scene files"):
        open_archive(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        open_archive(tmp_path / "nothing")


@pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data not found")
def test_the_shared_data_folder() -> None:
    """The 13 CAVE scenes and the 6 remote crops (products/ and remote_train/ are the sensor-data issues')."""
    cave = open_archive(SHARED / "data" / "cave")
    assert len(cave.readable) == 13
    assert not cave.failed
    assert all(e.format == "cave" for e in cave.entries)
    remote = open_archive(SHARED / "data" / "remote")
    assert len(remote.readable) == 6
    assert not remote.failed


def test_archive_layout_applies_where_it_can(tmp_path: Path) -> None:
    """--layout for an archive reaches the NumPy/MATLAB/HDF5 files and leaves self-describing TIFFs alone."""
    data = cube(4, bands=6)
    np.save(tmp_path / "a.npy", np.transpose(data, (1, 2, 0)))
    write_scene(tmp_path / "b.tif", Scene("b", data, SceneMeta("b", "npy")))
    scenes = [r.scene for r in open_archive(tmp_path, layout="hwc").scenes()]
    for scene in scenes:
        assert scene is not None
        np.testing.assert_array_equal(scene.cube, data)
