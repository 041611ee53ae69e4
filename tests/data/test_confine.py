"""Files are claims to check: a reader opens only regular files inside the archive root, HDF5 files that read only
themselves and TIFF pages of the file itself; what a file declares about its bands is checked against the cube, and
one bad value is one scene's failure with the key and the file named. Each attack is built as an attacker builds
it (tests/data/hostile.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from dualsr_deploy.data.archive import open_archive
from dualsr_deploy.data.confine import Confinement
from dualsr_deploy.data.formats import detect_format, open_scene
from dualsr_deploy.errors import DataError
from tests.data import hostile


@pytest.mark.parametrize("name", sorted(hostile.READS_OUTSIDE))
def test_a_file_that_reads_outside_the_archive_is_refused_with_the_reason(tmp_path: Path, name: str) -> None:
    archive, outside = tmp_path / "archive", tmp_path / "outside"
    archive.mkdir()
    path = hostile.READS_OUTSIDE[name](archive, outside)
    opened = open_archive(archive)
    entries = {entry.name: entry for entry in opened.entries}
    assert name in entries, [(e.name, e.error) for e in opened.entries]
    error = entries[name].error or ""
    assert error, f"{path} was probed as a scene: {entries[name]}"
    assert any(word in error for word in ("external", "virtual", "out of the archive root", "not a cube", "refused")), (
        error
    )
    with pytest.raises(DataError):
        open_scene(path, confine=Confinement.of(archive, [path])).close()


def test_the_reasons_say_what_the_file_pointed_at(tmp_path: Path) -> None:
    archive, outside = tmp_path / "archive", tmp_path / "outside"
    archive.mkdir()
    reasons = {}
    for _name, build in hostile.READS_OUTSIDE.items():
        build(archive, outside)
    for entry in open_archive(archive).entries:
        reasons[entry.name] = entry.error or ""
    assert "stores its values in external files" in reasons["external"]
    assert "virtual dataset" in reasons["virtual"]
    assert "external link" in reasons["EMIT_L2A_RFL_001_20230101T000000_2300101_001"]
    assert "ENVI data file" in reasons["linked"]
    assert "out of the archive root" in reasons["linked"]
    assert "band image" in reasons["bandlink"]
    assert "takes planes from other files (../outside/secret.ome.tif)" in reasons["scene.ome"]


def test_a_fifo_named_like_a_scene_is_skipped_and_never_opened(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    hostile.fifo(archive)
    with pytest.raises(DataError, match="no scene files"):
        open_archive(archive)  # returns at once: a read of the FIFO would wait for a writer forever
    with pytest.raises(DataError, match="FIFO"):
        detect_format(archive / "scene.h5")


def test_a_sidecar_link_out_of_the_root_fails_its_scene(tmp_path: Path) -> None:
    from dualsr_deploy.data import write_scene
    from dualsr_deploy.data.scene import Scene, SceneMeta

    archive, outside = tmp_path / "archive", tmp_path / "outside"
    archive.mkdir()
    cube = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    write_scene(archive / "a.npy", Scene("a", cube, SceneMeta("x", "npy")))
    outside.mkdir()
    os.replace(archive / "a.npy.json", outside / "a.npy.json")
    (archive / "a.npy.json").symlink_to(outside / "a.npy.json")
    entry = open_archive(archive).entries[0]
    assert entry.error is not None
    assert "metadata sidecar" in entry.error
    assert "out of the archive root" in entry.error


def envi(folder: Path, *lines: str, bands: int = 6, dtype: int = 2) -> Path:
    header = folder / "scene.hdr"
    header.write_text(
        "ENVI\nsamples = 8\nlines = 8\n"
        f"bands = {bands}\nheader offset = 0\nfile type = ENVI Standard\ndata type = {dtype}\ninterleave = bsq\n"
        "byte order = 0\n" + "".join(line + "\n" for line in lines)
    )
    values = (np.arange(bands * 64).reshape(bands, 8, 8) % 500 + 100).astype("<i2" if dtype == 2 else "<f4")
    values.tofile(folder / "scene.img")
    return header


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("bbl = {1, 1, 1, 1, 1, 1, 0, 0}", "bbl has 8 values, the cube 6 bands"),
        ("wavelength = {400, 450, n/a, 550, 600, 650}", "wavelength value 3 'n/a' is not a finite number"),
        ("wavelength = {400, 450, 500}", "wavelength has 3 values, the cube 6 bands"),
        ("wavelength = {400, 450, inf, 550, 600, 650}", "wavelength value 3"),
        ("fwhm = {10, 10, nan, 10, 10, 10}", "fwhm value 3"),
        ("data ignore value = none", "data ignore value 'none' is not a number"),
        ("reflectance scale factor = -10000", "must be positive"),
        ("reflectance scale factor = 0", "must be positive"),
        ("data gain values = {1, 1, 0, 1, 1, 1}", "gain of 0"),
    ],
)
def test_envi_metadata_that_lies_is_a_data_error_naming_the_key(tmp_path: Path, line: str, words: str) -> None:
    header = envi(tmp_path, line)
    with pytest.raises(DataError, match=r"scene\.hdr") as caught:
        open_scene(header).close()
    assert words in str(caught.value)


def test_dualsr_metadata_that_lies_is_checked_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as handle:
        handle["cube"] = np.ones((6, 8, 8), np.float32)
        handle["cube"].attrs["dualsr_scene"] = json.dumps({"source": "x", "format": "hdf5", "bad_bands": [100]})
    with pytest.raises(DataError, match="bad_bands names band 100"):
        open_scene(path).close()
    with h5py.File(path, "a") as handle:
        handle["cube"].attrs["dualsr_scene"] = '{"format": ["not", "a", "string"'
    with open_scene(path) as reader:  # unreadable JSON: noted and ignored
        assert "ignored unreadable dualsr metadata" in reader.notes
    with h5py.File(path, "a") as handle:
        handle["cube"].attrs["dualsr_scene"] = json.dumps({"source": "x", "format": "hdf5", "wavelengths": [1] * 5})
    with pytest.raises(DataError, match="wavelengths has 5 values, the cube 6 bands"):
        open_scene(path).close()


def test_an_emit_granule_declaring_a_billion_wavelengths_is_refused_before_any_is_read(tmp_path: Path) -> None:
    path = tmp_path / "EMIT_L2A_RFL_001_20230101T000000_2300101_002.nc"
    with h5py.File(path, "w") as handle:
        handle["reflectance"] = np.ones((4, 4, 6), np.float32)
        params = handle.create_group("sensor_band_parameters")
        params.create_dataset("wavelengths", shape=(10**9,), dtype="f4", chunks=(1024,))  # 4.8 KB on disk
    assert path.stat().st_size < 20_000
    with pytest.raises(DataError, match="declares 1000000000 values"):
        open_scene(path).close()


def test_an_aviris3_geotransform_of_three_numbers_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "AV3_RFL_ORT.nc"
    with h5py.File(path, "w") as handle:
        group = handle.create_group("reflectance")
        group["reflectance"] = np.ones((6, 8, 8), np.float32)
        group["wavelength"] = np.linspace(400, 900, 6)
        mapping = handle.create_dataset("transverse_mercator", data=np.int32(0))
        mapping.attrs["GeoTransform"] = "1 2 3"
    with pytest.raises(DataError, match="GeoTransform '1 2 3' has 3 numbers, not 6"):
        open_scene(path).close()


def test_a_geotiff_wavelengths_tag_with_a_word_is_a_data_error(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    path = tmp_path / "scene.tif"
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 6, "dtype": "uint16", "crs": "EPSG:32611"}
    with rasterio.open(path, "w", transform=from_origin(500000, 4000000, 30, 30), **profile) as dataset:
        dataset.write(np.ones((6, 8, 8), np.uint16))
        dataset.update_tags(wavelengths="400,450,green,550,600,650")
    with pytest.raises(DataError, match="tag wavelengths value 3 'green'"):
        open_scene(path).close()


def test_a_png_declaring_twenty_thousand_squared_pixels_fails_its_scene_only(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    folder = tmp_path / "archive" / "bomb_ms"
    folder.mkdir(parents=True)
    header = struct.pack(">IIBBBBB", 20000, 20000, 16, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    for band in range(1, 6):
        (folder / f"bomb_ms_{band:02d}.png").write_bytes(png)
    entry = open_archive(tmp_path / "archive").entries[0]
    assert entry.error is not None
    assert "bomb_ms_01.png" in entry.error


def test_a_cave_folder_of_a_thousand_bands_is_read_whole(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "many_ms"
    folder.mkdir()
    plane = Image.fromarray(np.full((4, 4), 300, np.uint16))
    for band in range(1, 1002):
        plane.save(folder / f"many_ms_{band:02d}.png")
    with open_scene(folder) as reader:
        assert reader.shape[0] == 1001  # not cut at 999


def test_flaash_int16_reflectance_is_scaled_once(tmp_path: Path) -> None:
    """FLAASH writes int16 reflectance × 10000 with 'reflectance scale factor = 10000': the cube is DN / 10000."""
    header = envi(tmp_path, "reflectance scale factor = 10000.000000", "sensor type = Unknown")
    with open_scene(header) as reader:
        raw = reader.read_raw()
        assert raw.dtype == np.int16
        assert raw.min() >= 100
        assert raw.max() <= 599
        scene = reader.load()
    assert scene.meta.scale_factor == 10000.0
    np.testing.assert_allclose(scene.cube, raw / 10000.0, rtol=1e-6)


def test_a_gdal_sidecar_linked_out_of_the_root_fails_its_geotiff(tmp_path: Path) -> None:
    """GDAL reads ``scene.tif.aux.xml`` on its own when it is there: a link of that name out of the archive is
    refused like any sidecar, before GDAL opens the image."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    archive, outside = tmp_path / "archive", tmp_path / "outside"
    archive.mkdir()
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 6, "dtype": "uint16", "crs": "EPSG:32611"}
    with rasterio.open(archive / "scene.tif", "w", transform=from_origin(5e5, 4e6, 30, 30), **profile) as dataset:
        dataset.write(np.ones((6, 8, 8), np.uint16))
    with open_scene(archive / "scene.tif") as reader:
        assert reader.files == [archive / "scene.tif"]
    (archive / "scene.tif.aux.xml").symlink_to(hostile.secret_file(outside))
    (entry,) = open_archive(archive).entries
    assert entry.error is not None
    assert "GDAL sidecar" in entry.error
    assert "out of the archive root" in entry.error


def test_a_fifo_named_directly_is_refused_at_once(tmp_path: Path) -> None:
    fifo = hostile.fifo(tmp_path)  # scene.h5: the multi-scene HDF5 check must not open it either
    (entry,) = open_archive(fifo).entries
    assert entry.error is not None
    assert "FIFO" in entry.error


def test_a_zero_wavelength_marking_an_unused_channel_is_not_a_lie(tmp_path: Path) -> None:
    header = envi(tmp_path, "wavelength = {0, 450, 500, 550, 600, 650}", "fwhm = {0, 10, 10, 10, 10, 10}")
    with open_scene(header) as reader:
        assert reader.wavelengths == (0.0, 450.0, 500.0, 550.0, 600.0, 650.0)
