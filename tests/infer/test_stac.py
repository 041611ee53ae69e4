"""STAC in and out: an Item beside each output and a Catalog of the run, read back by pystac and valid against the
STAC 1.1 core schemas (bundled with pystac), with the extension fields checked by what their specifications say; and
an ItemCollection built with pystac, as a producer builds it, as the archive."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data import read_scene
from dualsr_deploy.data.formats import write_scene
from tests.infer.conftest import lr_scene

pystac = pytest.importorskip("pystac")
rasterio = pytest.importorskip("rasterio")

runner = CliRunner()
ARGS = ["--scale", "2", "--tile", "16"]
TRANSFORM = (30.0, 0.0, 500000.0, 0.0, -30.0, 3760000.0)  # UTM 11N, 30 m pixels


def core_errors(document: dict[str, Any]) -> list[Any]:
    """Validation against the STAC core schemas only: pystac carries them; the extension schemas live on
    stac-extensions.github.io, which this machine cannot reach (their fields are checked by the tests instead)."""
    from pystac.validation import validate_dict

    return validate_dict(document, extensions=[])


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs as producers write them: a georeferenced int16 GeoTIFF with a scale, no-data and per-band wavelength
    and FWHM tags (as GDAL writes an ENVI-made GeoTIFF), and an ENVI BIL with a long header."""
    folder = tmp_path_factory.mktemp("produced")
    from rasterio.transform import Affine

    cube = lr_scene(0, 16, 31, scale=2).cube
    raw = np.round(cube * 10000).astype(np.int16)
    raw[:, 0, 0] = -9999
    profile = {"driver": "GTiff", "height": 16, "width": 16, "count": 31, "dtype": "int16", "nodata": -9999,
               "crs": "EPSG:32611", "transform": Affine(*TRANSFORM)}  # fmt: skip
    (folder / "lr").mkdir()
    with rasterio.open(folder / "lr" / "utm.tif", "w", **profile) as out:
        out.write(raw)
        out.scales = [1e-4] * 31
        for band in range(31):
            out.update_tags(band + 1, wavelength=str(400 + 10 * band), fwhm="10.5")
            out.set_band_description(band + 1, f"B{band + 1:02d}")
    bil = np.ascontiguousarray(np.round(cube * 10000).astype("<i2").transpose(1, 0, 2))  # rows, bands, columns
    (folder / "lr" / "flight").write_bytes(bil.tobytes())
    wavelengths = ", ".join(str(400 + 10 * b) for b in range(31))
    (folder / "lr" / "flight.hdr").write_text(
        "ENVI\ndescription = {airborne flight line, radiometrically corrected}\n"
        "samples = 16\nlines = 16\nbands = 31\nheader offset = 0\nfile type = ENVI Standard\n"
        "data type = 2\ninterleave = bil\nbyte order = 0\n"
        "map info = {UTM, 1.000, 1.000, 500000.000, 3760000.000, 3.0000000000e+001, 3.0000000000e+001, 11, North, "
        "WGS-84, units=Meters}\n"
        f"wavelength units = Nanometers\nwavelength = {{{wavelengths}}}\n"
        f"fwhm = {{{', '.join(['9.8'] * 31)}}}\ndata ignore value = -9999\n"
        "acquisition time = 2023-06-01T18:30:05Z\n"
    )
    return folder


def test_an_item_beside_each_output_and_a_catalog(produced: Path, tmp_path: Path) -> None:
    out = tmp_path / "sr"
    result = runner.invoke(app, ["infer", str(produced / "lr"), "-o", str(out), *ARGS, "--stac", "--qa"])
    assert result.exit_code == 0, result.output
    catalog = json.loads((out / "catalog.json").read_text())
    assert core_errors(catalog) == ["https://schemas.stacspec.org/v1.1.0/catalog-spec/json-schema/catalog.json"]
    read = pystac.Catalog.from_file(str(out / "catalog.json"))
    items = {item.id: item for item in read.get_items()}
    assert set(items) == {"utm", "flight"}

    document = json.loads((out / "utm.item.json").read_text())
    assert core_errors(document) == ["https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"]
    properties = document["properties"]
    assert properties["proj:code"] == "EPSG:32611"
    assert properties["proj:shape"] == [32, 32]
    assert properties["proj:transform"] == [15.0, 0.0, 500000.0, 0.0, -15.0, 3760000.0]  # the ×2 grid
    (ring,) = document["geometry"]["coordinates"]
    west, south, east, north = document["bbox"]
    assert -117.1 < west < east < -116.9  # 500 km E in zone 11 is its central meridian, −117°
    assert 33.9 < south < north < 34.0
    assert ring[0] == ring[-1]
    data = document["assets"]["data"]
    assert data["type"] == "image/tiff; application=geotiff"
    assert data["roles"] == ["data"]
    band = data["bands"][3]
    assert band == {"name": "B04", "eo:center_wavelength": 0.43, "eo:full_width_half_max": 0.0105, "nodata": -9999.0,
                    "data_type": "int16", "raster:scale": 0.0001, "raster:offset": 0.0}  # fmt: skip
    assert document["assets"]["qa"]["roles"] == ["data", "quality"]
    assert properties["processing:software"] == {"dualsr-deploy": properties["processing:software"]["dualsr-deploy"]}
    assert properties["dualsr:stage"] == "backproject"
    assert "×2" in properties["processing:lineage"]
    assert set(document["stac_extensions"]) == {
        "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
        "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    }
    derived = [link for link in document["links"] if link["rel"] == "derived_from"]
    assert [link["href"] for link in derived] == [str(produced / "lr" / "utm.tif")]
    item = items["utm"]
    for asset in item.assets.values():  # every asset is where its href says
        assert Path(asset.get_absolute_href()).is_file()
    assert read_scene(Path(item.assets["data"].get_absolute_href())).cube.shape == (31, 32, 32)

    envi = json.loads((out / "flight.item.json").read_text())
    assert core_errors(envi) == ["https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"]
    assert envi["properties"]["datetime"] == "2023-06-01T18:30:05Z"
    assert envi["properties"]["dualsr:datetime"].startswith("acquisition")
    assert envi["assets"]["header"]["roles"] == ["metadata"]
    assert envi["assets"]["data"]["href"] == "./flight"
    assert envi["assets"]["data"]["bands"][0]["eo:full_width_half_max"] == 0.0098
    assert envi["properties"]["proj:code"] == "EPSG:32611"


def test_an_item_collection_as_the_archive(produced: Path, tmp_path: Path) -> None:
    lr = tmp_path / "staged"
    for seed in range(3):
        write_scene(lr / f"g{seed}.h5", lr_scene(seed, 16, 31, scale=2))
    (tmp_path / "outside.h5").write_bytes((lr / "g0.h5").read_bytes())
    when = datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC)
    features = []
    for ident, href in [("first", "g0.h5"), ("second", "g1.h5"), ("escape", "../outside.h5"), ("first", "g2.h5")]:
        item = pystac.Item(ident, None, None, when, {})
        item.add_asset("data", pystac.Asset(f"./{href}", media_type=pystac.MediaType.HDF5, roles=["data"]))
        item.add_asset(
            "thumbnail", pystac.Asset(f"./{ident}.png", media_type=pystac.MediaType.PNG, roles=["thumbnail"])
        )
        features.append(item.to_dict(include_self_link=False))
    only_a_picture = pystac.Item("picture", None, None, when, {})
    only_a_picture.add_asset("thumbnail", pystac.Asset("./p.png", media_type=pystac.MediaType.PNG, roles=["thumbnail"]))
    features.append(only_a_picture.to_dict(include_self_link=False))
    (lr / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = tmp_path / "sr"
    result = runner.invoke(app, ["infer", str(lr / "items.json"), "-o", str(out), *ARGS], terminal_width=240)
    assert result.exit_code == 1, result.output
    records = {r["name"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    assert {name for name, r in records.items() if r["status"] == "ok"} == {"first", "second"}
    assert "outside the archive root" in records["escape"]["error"]
    assert "no asset in a format this reads" in records["picture"]["error"]
    assert not (out / "escape.h5").exists()
    reference = runner.invoke(app, ["infer", str(lr / "g1.h5"), "-o", str(tmp_path / "one"), *ARGS])
    assert reference.exit_code == 0
    assert np.array_equal(read_scene(out / "second.h5").cube, read_scene(tmp_path / "one" / "g1.h5").cube)
    chained = runner.invoke(app, ["infer", str(out / "manifest.jsonl"), "-o", str(tmp_path / "x"), *ARGS])
    assert chained.exit_code != 0  # a manifest is no archive: said, not guessed


def test_a_runs_catalog_is_the_next_runs_archive(produced: Path, tmp_path: Path) -> None:
    first = runner.invoke(app, ["infer", str(produced / "lr"), "-o", str(tmp_path / "a"), *ARGS, "--stac"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["infer", str(tmp_path / "a" / "catalog.json"), "-o", str(tmp_path / "b"), *ARGS])
    assert second.exit_code == 0, second.output
    assert (
        sorted(p.name for p in (tmp_path / "b").iterdir() if p.name != "manifest.jsonl")
        == ["flight.hdr", "flight.hdr.dualsr.json", "flight", "utm.tif"]
        or (tmp_path / "b" / "utm.tif").exists()
    )
    assert read_scene(tmp_path / "b" / "utm.tif").cube.shape == (31, 64, 64)


def test_shards_leave_the_catalog_to_the_merge(produced: Path, tmp_path: Path) -> None:
    out = tmp_path / "sr"
    for index in (1, 2):
        part = runner.invoke(
            app, ["infer", str(produced / "lr"), "-o", str(out), *ARGS, "--stac", "--shard", f"{index}/2"]
        )
        assert part.exit_code == 0, part.output
    assert not (out / "catalog.json").exists()
    merged = runner.invoke(app, ["manifest", "merge", str(out)])
    assert merged.exit_code == 0, merged.output
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    assert sorted(item.id for item in catalog.get_items()) == ["flight", "utm"]
