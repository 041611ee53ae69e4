"""What a new user hit, each run as the user ran it: the Python API's weights, ``--qa`` with TIFF, two weight
families in one ``--engines`` folder, band metadata GDAL can see, values capped silently, a moved output folder,
paths read as markup, ``--format nc`` on the wrong product, xarray results that did not say what ran, and the
smaller ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data import write_scene
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.infer import InferOptions, run_archive
from tests.conftest import SHARED

runner = CliRunner()
PRODUCTS = SHARED / "data" / "products"
needs_products = pytest.mark.skipif(not PRODUCTS.is_dir(), reason="../shared/data/products not found")
WAVELENGTHS = tuple(float(w) for w in np.linspace(400, 2400, 12))


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})
    return result.exit_code, result.output


def records(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]


def airborne_like(folder: Path, name: str = "flight", *, nodata: float | None = None) -> Path:
    """A 12-band scene whose wavelengths reach 2400 nm (so --weights auto picks airborne), smooth in space."""
    y, x = np.mgrid[0:16, 0:16]
    cube = np.stack([0.2 + 0.1 * np.sin(x / 3 + b) * np.cos(y / 4) + 0.01 * b for b in range(12)]).astype(np.float32)
    meta = SceneMeta(
        "made", "hdf5", wavelengths=WAVELENGTHS, nodata=nodata, band_names=tuple(f"b{i}" for i in range(12))
    )
    path = folder / f"{name}.h5"
    write_scene(path, Scene(name, cube, meta))
    return path


def test_the_python_api_picks_the_weights_the_cli_picks(tmp_path: Path) -> None:
    airborne_like(tmp_path / "lr")
    report = run_archive(tmp_path / "lr", tmp_path / "api", InferOptions(scale=2))  # the docs' snippet
    code, said = cli("infer", str(tmp_path / "lr"), "-o", str(tmp_path / "cli"), "--scale", "2")
    assert code == 0, said
    (api,), (command,) = report.records, records(tmp_path / "cli")
    assert api.weights == command["weights"] == "airborne"
    assert api.weights_choice == command["weights_choice"]
    assert api.output_sha256 == command["output_sha256"]


def test_qa_with_tiff_writes_both_layers_and_a_failed_quality_layer_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rasterio = pytest.importorskip("rasterio")
    airborne_like(tmp_path / "lr", nodata=-1.0)
    for output_format, names in (
        ("tif", ("flight.tif", "flight_qa.tif")),
        ("cog", ("flight.cog.tif", "flight_qa.cog.tif")),
    ):
        out = tmp_path / output_format
        code, said = cli(
            "infer", str(tmp_path / "lr"), "-o", str(out), "--scale", "2", "--format", output_format, "--qa"
        )
        assert code == 0, said
        for name in names:
            with rasterio.open(out / name) as dataset:
                assert dataset.count in (1, 12)
    from dualsr_deploy.data.formats import write_scene as real
    from dualsr_deploy.infer import pipeline

    def quality_layer_fails(path: Path, *args: object, **kwargs: object) -> Path:
        if "_qa" in Path(path).name:
            raise OSError("the disk went away")
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "write_scene", quality_layer_fails)
    out = tmp_path / "broken"
    code, said = cli("infer", str(tmp_path / "lr"), "-o", str(out), "--scale", "2", "--format", "tif", "--qa")
    assert code == 1
    (record,) = records(out)
    assert str(record["error"]).startswith(f"writing the quality layer {out / 'flight_qa.tif'}")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["manifest.jsonl"]


def test_a_plain_tiff_shows_gdal_its_band_names_wavelengths_and_nodata(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    airborne_like(tmp_path / "lr", nodata=-1.0)
    code, said = cli("infer", str(tmp_path / "lr"), "-o", str(tmp_path / "sr"), "--scale", "2", "--format", "tif")
    assert code == 0, said
    with rasterio.open(tmp_path / "sr" / "flight.tif") as dataset:
        assert dataset.crs is None  # a lab cube: no grid invented for it
        assert dataset.nodata == -1.0
        assert dataset.descriptions == tuple(f"b{i}" for i in range(12))
        assert [float(dataset.tags(b)["wavelength"]) for b in range(1, 13)] == list(WAVELENGTHS)


@pytest.mark.parametrize(("backend", "runtime"), [("onnx", "onnxruntime"), ("openvino", "openvino")])
def test_two_weight_families_share_one_engines_folder(tmp_path: Path, backend: str, runtime: str) -> None:
    """Graphs (and IR) of two weights families side by side; one copied over another's is refused with a command
    that, pasted, makes what the run uses (band-chunk graphs on a CPU, and IR for openvino) in one go."""
    pytest.importorskip(runtime)
    airborne_like(tmp_path / "lr")
    engines = tmp_path / "engines"
    for weights, out in (("auto", "a"), ("cave", "c")):
        code, said = cli(
            "infer", str(tmp_path / "lr"), "-o", str(tmp_path / out), "--scale", "2", "--stage", "coarse",
            "--backend", backend, "--engines", str(engines), "--weights", weights,
        )  # fmt: skip
        assert code == 0, said
    folders = sorted(p.name for p in engines.iterdir())
    assert len(folders) == 2
    assert all(name.startswith("coarsr-x2-c8-") for name in folders)  # one per weights (SHA-256): 8-band chunks
    assert records(tmp_path / "a")[0]["weights"] == "airborne"
    assert records(tmp_path / "c")[0]["weights"] == "cave"
    # a graph whose manifest names other weights than its folder: the advice given works when pasted
    from dualsr_deploy.checkpoint import read_checkpoint
    from dualsr_deploy.weights import shipped_weights

    airborne = engines / f"coarsr-x2-c8-{read_checkpoint(shipped_weights(2, 'airborne'))[1].sha256[:12]}"
    cave = next(p for p in engines.iterdir() if p != airborne)
    for file in cave.iterdir():
        shutil.copy(file, airborne / file.name)
    run = ("infer", str(tmp_path / "lr"), "--scale", "2", "--stage", "coarse", "--backend", backend)
    code, said = cli(*run, "-o", str(tmp_path / "x"), "--engines", str(engines))
    assert code == 2, said
    advice = " ".join(said.split()).split("or run: ", 1)[1].split()
    assert advice[:2] == ["dualsr", "export"], advice
    code, done = cli(*advice[1:])
    assert code == 0, done
    code, said = cli(*run, "-o", str(tmp_path / "y"), "--engines", str(engines))
    assert code == 0, said


@needs_products
def test_values_capped_at_the_clip_ceiling_are_counted_and_said(tmp_path: Path) -> None:
    code, said = cli("infer", str(PRODUCTS / "avirisng_l1b_envi"), "-o", str(tmp_path / "sr"), "--scale", "2")
    assert code == 0, said
    notes = {str(r["name"]): " ".join(r.get("notes", [])) for r in records(tmp_path / "sr")}  # type: ignore[arg-type]
    capped = notes["ang20160910t185702_2rdn_img"]
    assert "capped at the clip ceiling" in capped
    count = int(capped.split(" output values")[0].split()[-1])
    assert count > 0
    assert "capped at the clip ceiling" in " ".join(said.split())  # in the summary too


def test_a_copied_output_folder_resumes_against_its_own_files(tmp_path: Path) -> None:
    for index in range(2):
        airborne_like(tmp_path / "lr", f"s{index}")
    assert cli("infer", str(tmp_path / "lr"), "-o", str(tmp_path / "quiet"), "--scale", "2")[0] == 0
    assert records(tmp_path / "quiet")[0]["output"] in ("s0.h5", "s1.h5")  # relative to the manifest's folder
    shutil.copytree(tmp_path / "quiet", tmp_path / "trunc")
    data = (tmp_path / "trunc" / "s0.h5").read_bytes()
    (tmp_path / "trunc" / "s0.h5").write_bytes(data[: len(data) // 2])
    code, said = cli("infer", str(tmp_path / "lr"), "-o", str(tmp_path / "trunc"), "--scale", "2", "--resume")
    assert code == 0, said
    redone = [r for r in records(tmp_path / "trunc")[2:]]
    assert [r["name"] for r in redone] == ["s0"]
    assert "cut short" in " ".join(redone[0]["notes"])  # type: ignore[arg-type]


def test_paths_with_brackets_are_printed_as_written(tmp_path: Path) -> None:
    airborne_like(tmp_path / "flight[old]")
    code, said = cli("infer", str(tmp_path / "flight[old]"), "-o", str(tmp_path / "out[red]"), "--scale", "2")
    assert code == 0, said
    flat = "".join(said.split())
    assert "flight[old]→" in flat
    assert "out[red]" in flat
    assert f"manifest:{tmp_path}/out[red]/manifest.jsonl" in flat


def test_netcdf_output_of_another_product_fails_at_plan_time(tmp_path: Path) -> None:
    airborne_like(tmp_path / "lr")
    code, said = cli(
        "infer", str(tmp_path / "lr"), "-o", str(tmp_path / "sr"), "--scale", "2", "--format", "nc", "--dry-run"
    )
    flat = " ".join(said.split())
    assert "fail" in flat
    assert "--format nc: NetCDF output rebuilds the structure" in flat
    code, said = cli("infer", str(tmp_path / "lr"), "-o", str(tmp_path / "sr"), "--scale", "2", "--format", "nc")
    assert code == 1
    (record,) = records(tmp_path / "sr")
    assert "mode" not in record  # never computed
    assert str(record["error"]).count(str(tmp_path / "lr")) <= 1


def test_xarray_results_say_what_ran_and_declare_their_nodata(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")  # registers .rio
    from dualsr_deploy.xarray import super_resolve

    values = (np.random.default_rng(0).random((12, 16, 16)) * 3000 + 500).astype(np.float32)
    values[:, 0, 0] = -32768
    da = xr.DataArray(
        values, dims=("band", "y", "x"), coords={"band": list(WAVELENGTHS), "y": np.arange(16.0), "x": np.arange(16.0)},
        attrs={"_FillValue": -32768.0}, name="reflectance",
    )  # fmt: skip
    sr = super_resolve(da, scale=2)
    assert sr.attrs["dualsr_stage"] in ("backproject", "coarse", "dual")
    assert sr.attrs["dualsr_weights"] == "airborne"
    assert sr.attrs["dualsr_weights_choice"].startswith("auto: wavelengths reach 2400 nm")
    assert np.isnan(sr.values[:, 0, 0]).all()
    assert np.isnan(sr.rio.nodata)  # NaN in the values, as rio.nodata says
    assert sr.rio.encoded_nodata == -32768  # written there by to_raster / to_netcdf
    assert sr.attrs["dualsr_backend"].startswith(("torch-", "openvino-", "onnx-"))
    assert sr.attrs["dualsr_backend_choice"].startswith("--backend auto → ")
    # another scene of the same family, through the same cached models: its own reason, not the first scene's
    longer = da.assign_coords(band=[w + 93.0 for w in WAVELENGTHS])
    assert super_resolve(longer, scale=2).attrs["dualsr_weights_choice"].startswith("auto: wavelengths reach 2493 nm")


def test_the_smaller_ones(tmp_path: Path) -> None:
    code, said = cli("infer", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o"))
    assert code == 2
    assert "--precision auto" not in said
    assert "--stage auto" not in said
    code, said = cli("version")
    assert "openvino" in said
    import torch

    if not torch.cuda.is_available():
        airborne_like(tmp_path / "lr")
        code, said = cli("infer", str(tmp_path / "lr"), "-o", str(tmp_path / "t"), "--backend", "trt")
        assert code == 2
        assert "give --device cuda" not in said
        assert "this machine has none" in " ".join(said.split())
    from dualsr_deploy.infer.quality import qa_path

    assert qa_path(Path("x.cog.tif")).name == "x_qa.cog.tif"
    assert "/site/" in (Path(__file__).parents[2] / ".gitignore").read_text().split()


def test_an_envi_output_keeps_its_inputs_data_file_name(tmp_path: Path) -> None:
    from tests.interop.producers import write_envi_bil

    (tmp_path / "lr").mkdir()
    write_envi_bil(tmp_path / "lr" / "ang20170323t202244_rdn", bands=12)  # data file without a suffix, as AVIRIS-NG
    code, said = cli("infer", str(tmp_path / "lr"), "-o", str(tmp_path / "sr"), "--scale", "2", "--stage", "coarse")
    assert code == 0, said
    names = sorted(p.name for p in (tmp_path / "sr").iterdir() if not p.name.startswith("."))
    assert names == [
        "ang20170323t202244_rdn",
        "ang20170323t202244_rdn.dualsr.json",
        "ang20170323t202244_rdn.hdr",
        "manifest.jsonl",
    ]


def test_reports_state_the_gain_over_bicubic(tmp_path: Path) -> None:
    from dualsr_deploy.data.synth import synthesize

    write_scene(tmp_path / "hr" / "a.h5", synthesize(0, size=32, bands=8))
    code, said = cli("eval", str(tmp_path / "hr"), "-o", str(tmp_path / "report"), "--no-figures", "--tile", "16")
    assert code == 0, said
    assert "gain over bicubic (means): coarse" in " ".join(said.split())
    assert "gain over bicubic (means): coarse" in (tmp_path / "report" / "report.md").read_text()
    assert "gain over bicubic (means): coarse" in (tmp_path / "report" / "report.html").read_text()
