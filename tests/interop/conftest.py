"""Inputs built as their producers build them, shared by the client tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def geotiff_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EnMAP-like GeoTIFF as GDAL producers tag it: dataset tags (acquisition time, sensor) and per-band
    ``wavelength``, ``wavelength_units``, ``fwhm``; written with rasterio, not with this package."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    root = tmp_path_factory.mktemp("tif") / "scenes"
    root.mkdir()
    path = root / "ENMAP01-____L2A-DT0000001867_20220724T104526Z_001.tif"
    cube = np.transpose(np.round(_cube() * 10000), (2, 0, 1)).astype(np.int16)
    profile = {"driver": "GTiff", "count": cube.shape[0], "height": cube.shape[1], "width": cube.shape[2]}
    profile |= {"dtype": "int16", "crs": "EPSG:32633", "transform": from_origin(362175, 5809965, 30, 30)}
    with rasterio.open(path, "w", nodata=-32768, **profile) as dataset:
        dataset.write(cube)
        dataset.update_tags(ACQUISITION_TIME="2022-07-24T10:45:26Z", SENSOR="EnMAP HSI", wavelength_units="Micrometers")
        for band in range(cube.shape[0]):
            centre = 0.42 + 0.02 * band
            dataset.update_tags(band + 1, wavelength=f"{centre:.4f}", wavelength_units="Micrometers", fwhm="0.0065")
            dataset.set_band_description(band + 1, f"band {band + 1} ({centre * 1000:.1f} nm)")
    return root


def _cube() -> np.ndarray:
    from tests.interop.producers import smooth_spectra

    return smooth_spectra(16, 16, 20, seed=5)
