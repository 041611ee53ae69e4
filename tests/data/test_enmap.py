"""EnMAP L1C/L2A products: the spectral image GeoTIFF with ``METADATA.XML`` beside it. Built from the real tile and
the real qualification ``METADATA.XML`` of ``../shared/data/products/`` (the latter describes 218 bands, a product
other than the 224-band tiles, so it also serves as the mismatched metadata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dualsr_deploy.data.archive import open_archive
from dualsr_deploy.data.formats import open_scene
from dualsr_deploy.errors import DataError
from tests.conftest import SHARED

PRODUCTS = SHARED / "data" / "products"
TILE = PRODUCTS / "enmap_l2a_tiles" / "enmap_potsdam_tile_64_0.tif"
needs_sample = pytest.mark.skipif(not TILE.is_file(), reason="../shared/data/products not found")
PREFIX = "ENMAP01-____L2A-DT0000001867_20220724T104500Z_001_V010303_20230101T000000Z-"


def spectral_image(folder: Path) -> tuple[Path, np.ndarray, list[float], list[float], set[int]]:
    """The tile's pixels as a bare GeoTIFF (no per-band tags, no scales): only the XML can say what they are."""
    import rasterio

    with rasterio.open(TILE) as tile:
        data, profile = tile.read(), tile.profile
    with open_scene(TILE) as reader:
        wavelengths, fwhm, bad = list(reader.wavelengths or ()), list(reader.fwhm or ()), set(reader.declared_bad)
    target = folder / f"{PREFIX}SPECTRAL_IMAGE.TIF"
    with rasterio.open(target, "w", **profile) as out:
        out.write(data)
    return target, data, wavelengths, fwhm, bad


def metadata_xml(path: Path, wavelengths: list[float], fwhm: list[float], bad: set[int]) -> None:
    characterisation = "".join(
        f'<bandID number="{i + 1}"><wavelengthCenterOfBand>{w}</wavelengthCenterOfBand><FWHMOfBand>{f}</FWHMOfBand>'
        f"<GainOfBand>0.0001</GainOfBand><OffsetOfBand>0</OffsetOfBand></bandID>"
        for i, (w, f) in enumerate(zip(wavelengths, fwhm, strict=True))
    )
    statistics = "".join(
        f'<bandID number="{i + 1}"><waveLength>{w}</waveLength><mean>{0 if i in bad else 0.1}</mean>'
        f"<stdDeviation>{0 if i in bad else 0.02}</stdDeviation></bandID>"
        for i, w in enumerate(wavelengths)
    )
    path.write_text(
        f"<level_X><specific><bandCharacterisation>{characterisation}</bandCharacterisation></specific>"
        f"<product><bandStatistics>{statistics}</bandStatistics></product></level_X>"
    )


@needs_sample
def test_the_metadata_xml_gives_wavelengths_gains_and_bad_bands(tmp_path: Path) -> None:
    image, data, wavelengths, fwhm, bad = spectral_image(tmp_path)
    metadata_xml(tmp_path / f"{PREFIX}METADATA.XML", wavelengths, fwhm, bad)
    (tmp_path / f"{PREFIX}QL_PIXELMASK.TIF").write_bytes(image.read_bytes())
    with open_scene(image) as reader:
        scene = reader.load()
    assert scene.meta.wavelengths == pytest.approx(tuple(wavelengths))
    assert scene.meta.fwhm == pytest.approx(tuple(fwhm))
    assert scene.meta.band_gains == (0.0001,) * data.shape[0]
    assert set(scene.meta.bad_bands) == bad
    archive = open_archive(tmp_path)
    assert [e.name for e in archive.entries] == [f"{PREFIX}SPECTRAL_IMAGE"]
    reasons = {s.path.name: s.reason for s in archive.skipped}
    assert reasons[f"{PREFIX}METADATA.XML"].startswith("metadata of the EnMAP product")
    assert reasons[f"{PREFIX}QL_PIXELMASK.TIF"].startswith("quicklook or quality layer")


@needs_sample
def test_metadata_of_another_product_is_refused_naming_both(tmp_path: Path) -> None:
    image, *_ = spectral_image(tmp_path)
    (tmp_path / f"{PREFIX}METADATA.XML").write_bytes(
        (PRODUCTS / "enmap_l2a_metadata" / "L2A_qualification_METADATA.XML").read_bytes()
    )
    with pytest.raises(DataError, match=r"METADATA\.XML: describes 218 bands, its spectral image .* has 224"):
        open_scene(image)
    entry = open_archive(tmp_path).entries[0]
    assert entry.error is not None
    assert "describes 218 bands" in entry.error


@needs_sample
def test_a_desis_style_geotiff_takes_its_envi_header(tmp_path: Path) -> None:
    """DESIS L2A: the spectral GeoTIFF with an ENVI-style .hdr beside it (wavelengths, fwhm, gains/offsets, bbl)."""
    image, data, wavelengths, fwhm, bad = spectral_image(tmp_path)
    desis = image.with_name("DESIS-HSI-L2A-DT0483531728_001-20200823T213734-V0210-SPECTRAL_IMAGE.tif")
    image.rename(desis)
    count = data.shape[0]
    desis.with_suffix(".hdr").write_text(
        "ENVI\n"
        f"samples = {data.shape[2]}\nlines = {data.shape[1]}\nbands = {count}\n"
        f"wavelength = {{{', '.join(map(str, wavelengths))}}}\nfwhm = {{{', '.join(map(str, fwhm))}}}\n"
        f"data gain values = {{{', '.join(['0.0001'] * count)}}}\n"
        f"data offset values = {{{', '.join(['0'] * count)}}}\n"
        f"bbl = {{{', '.join('0' if i in bad else '1' for i in range(count))}}}\n"
    )
    archive = open_archive(tmp_path)
    assert [e.name for e in archive.entries] == [desis.stem]
    assert archive.skipped[0].reason.startswith("ENVI header of the GeoTIFF")
    with open_scene(desis) as reader:
        scene = reader.load()
    assert scene.meta.wavelengths == pytest.approx(tuple(wavelengths))
    assert scene.meta.band_gains == (0.0001,) * count
    assert set(scene.meta.bad_bands) == bad
