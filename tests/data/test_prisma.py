"""PRISMA L2D (HDF-EOS5): no public sample could be had here, so these tests build small products in the layout of
the PRISMA Product Specification (``HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields/{VNIR,SWIR}_Cube`` as (rows, bands,
columns) uint16 DN; root attributes ``List_Cw_*``/``List_Fwhm_*`` in descending order with 0 for unused bands,
``L2Scale*Min/Max``, ``Epsg_Code`` and the ``Product_UL/LRcorner`` coordinates), filled with the real EnMAP L2A
reflectance of ``../shared/data/products/enmap_l2a_tiles`` (whose VNIR and SWIR detectors overlap like PRISMA's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data.formats import open_scene
from tests.conftest import SHARED

runner = CliRunner()
TILE = SHARED / "data" / "products" / "enmap_l2a_tiles" / "enmap_potsdam_tile_64_0.tif"
needs_sample = pytest.mark.skipif(not TILE.is_file(), reason="../shared/data/products not found")
MAXIMA = {"Vnir": 1.0, "Swir": 0.8}


def make_l2d(path: Path, *, bad_lists: bool = False) -> dict[str, np.ndarray]:
    """A PRISMA L2D product from the EnMAP tile; its top-left 3×3 pixels are no-data (all-zero spectra)."""
    import h5py

    with open_scene(TILE) as reader:
        raw = reader.read_raw()
        wavelengths = np.asarray(reader.wavelengths)
        fwhm = np.asarray(reader.fwhm)
        bad = reader.declared_bad
    reflectance = raw.astype(np.float64) * 1e-4
    split = int(np.argmax(np.diff(wavelengths) < 0)) + 1  # EnMAP: VNIR, then SWIR starting below VNIR's end
    regions = {"Vnir": [b for b in range(split)], "Swir": [b for b in range(split, raw.shape[0]) if b not in bad]}
    made = {}
    with h5py.File(path, "w") as handle:
        fields = handle.create_group("HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields")
        for name, bands in regions.items():
            order = bands[::-1]  # PRISMA lists wavelengths in descending order
            dn = np.clip(np.rint(reflectance[order] / MAXIMA[name] * 65535), 0, 65535).astype(np.uint16)
            dn = np.concatenate([dn, np.zeros((1, *dn.shape[1:]), np.uint16)])  # an unused band, wavelength 0
            dn[:, :3, :3] = 0
            fields.create_dataset(f"{name.upper()}_Cube", data=np.transpose(dn, (1, 0, 2)))
            centres = [*wavelengths[order].tolist(), 0.0]
            handle.attrs[f"List_Cw_{name}"] = np.asarray(centres[:-2] if bad_lists else centres, np.float32)
            handle.attrs[f"List_Fwhm_{name}"] = np.asarray([*fwhm[order].tolist(), 0.0], np.float32)
            handle.attrs[f"L2Scale{name}Min"] = 0.0
            handle.attrs[f"L2Scale{name}Max"] = MAXIMA[name]
            made[name] = wavelengths[order]
        handle.attrs["Epsg_Code"] = 32633
        handle.attrs["Product_ULcorner_easting"] = 364095.0 + 15
        handle.attrs["Product_ULcorner_northing"] = 5809965.0 - 15
        handle.attrs["Product_LRcorner_easting"] = 364095.0 + 15 + 30 * 31
        handle.attrs["Product_LRcorner_northing"] = 5809965.0 - 15 - 30 * 31
    return made


@needs_sample
def test_a_prisma_l2d_product_goes_through_infer_and_comes_back_as_hdf5(tmp_path: Path) -> None:
    archive = tmp_path / "prisma"
    archive.mkdir()
    made = make_l2d(archive / "PRS_L2D_STD_20220724104500_20220724104504_0001.he5")
    make_l2d(archive / "PRS_L2D_bad_lists.he5", bad_lists=True)
    (archive / "PRS_L1_truncated.he5").write_bytes((archive / "PRS_L2D_bad_lists.he5").read_bytes()[:700])
    with open_scene(archive / "PRS_L2D_STD_20220724104500_20220724104504_0001.he5") as reader:
        scene = reader.load()
    assert reader.format == "prisma"
    waves = np.asarray(scene.meta.wavelengths)
    assert np.all(np.diff(waves) > 0)  # ordered by wavelength
    assert waves[waves <= made["Vnir"].max() + 1e-3].size == made["Vnir"].size  # the overlap keeps VNIR only
    assert scene.valid is not None
    assert int((~scene.valid).sum()) == 9  # the all-zero spectra
    np.testing.assert_allclose(scene.meta.georef.transform, (30, 0, 364095, 0, -30, 5809965))  # type: ignore[union-attr]
    out = tmp_path / "sr"
    args = ["infer", str(archive), "-o", str(out), "--scale", "2", "--stage", "coarse"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output  # the two broken products fail, with reasons
    said = " ".join(result.output.split())  # the console wraps long lines where the temporary path is long
    assert "the wavelength lists do not fit the cube" in said
    assert "PRS_L1_truncated.he5: cannot open it as HDF-EOS5/HDF5; is the file complete?" in said
    written = out / "PRS_L2D_STD_20220724104500_20220724104504_0001.h5"
    with open_scene(written) as reader:
        stored = reader.read_raw()
        back = reader.load()
    assert stored.dtype == np.uint16  # DN again, through the same gains and offsets
    assert stored.shape == (waves.size, 64, 64)
    assert np.all(stored[:, :6, :6] == 0)  # no-data as PRISMA marks it
    assert back.meta.wavelengths == scene.meta.wavelengths
    assert back.meta.band_gains == scene.meta.band_gains
    np.testing.assert_allclose(back.meta.georef.transform, (15, 0, 364095, 0, -15, 5809965))  # type: ignore[union-attr]
    assert back.meta.georef.crs == "EPSG:32633"  # type: ignore[union-attr]
