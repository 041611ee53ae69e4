"""``dualsr eval`` and ``dualsr demo``: report values are the metrics module's, the HTML renders in a browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dualsr_deploy import metrics
from dualsr_deploy.cli.main import app
from dualsr_deploy.data import read_scene
from dualsr_deploy.data.degrade import degrade
from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.data.synth import synthesize
from dualsr_deploy.evaluation import EvalOptions, evaluate_archive, write_reports
from dualsr_deploy.infer import InferOptions, run_archive
from dualsr_deploy.ops.imresize import imresize

runner = CliRunner()


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hr")
    write_scene(folder / "a.h5", synthesize(0, size=96, bands=31))
    write_scene(folder / "b.h5", synthesize(1, size=90, bands=31))  # not a multiple of 4: cropped to 88
    return folder


@pytest.fixture(scope="module")
def evaluated(hr_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("report")
    result = runner.invoke(app, ["eval", str(hr_folder), "-o", str(out), "--tile", "16"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "paper, CAVE: DualSR (reference)" in result.output
    return out, json.loads((out / "report.json").read_text())


def test_report_values_are_the_metrics_modules(hr_folder: Path, evaluated: tuple[Path, dict[str, object]]) -> None:
    _, report = evaluated
    scenes = {s["name"]: s for s in report["scenes"]}  # type: ignore[attr-defined]
    hr = torch.from_numpy(read_scene(hr_folder / "b.h5").cube)[:, :88, :88]
    bicubic = imresize(degrade(hr, 4).double(), 4).clamp(0, 1).float()
    expected = metrics.evaluate(bicubic.double(), hr.double(), scale=4)
    got = scenes["b"]["scores"]["bicubic"]
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert scenes["b"]["shape"] == [31, 88, 88]
    band_psnr = metrics.band_psnr(bicubic.double(), hr.double()).tolist()
    assert scenes["b"]["bands"]["bicubic"]["psnr"] == pytest.approx(band_psnr)
    means = report["mean"]["fine"]  # type: ignore[index]
    assert means["psnr"] == pytest.approx(np.mean([s["scores"]["fine"]["psnr"] for s in scenes.values()]))


def test_given_sr_outputs_score_like_the_fine_stage_they_came_from(hr_folder: Path, tmp_path: Path) -> None:
    # dualsr infer on simulated LR, then eval with the same LR and those outputs: the given row equals "fine".
    for name in ("a", "b"):
        scene = read_scene(hr_folder / f"{name}.h5")
        hr = torch.from_numpy(scene.cube)
        lr = degrade(hr[:, : hr.shape[1] // 4 * 4, : hr.shape[2] // 4 * 4], 4).numpy()
        write_scene(tmp_path / "lr" / f"{name}.h5", Scene(name, lr, scene.meta))
    assert run_archive(tmp_path / "lr", tmp_path / "sr", InferOptions(tile=16)).exit_code == 0
    report = evaluate_archive(hr_folder, EvalOptions(lr=tmp_path / "lr", sr=tmp_path / "sr", tile=32, figures=False))
    assert report.methods == ["bicubic", "coarse", "fine", "given (sr)"]
    for result in report.scenes:
        for key in ("psnr", "ssim", "sam"):
            assert result.scores["given (sr)"][key] == pytest.approx(result.scores["fine"][key], abs=1e-4)


def test_reports_carry_tables_reference_rows_and_figures(evaluated: tuple[Path, dict[str, object]]) -> None:
    out, report = evaluated
    assert report["paper_reference"]["rows"]["bicubic"]["psnr"] == 35.755  # type: ignore[index]
    csv_lines = (out / "report.csv").read_text().splitlines()
    assert csv_lines[0].startswith("scene,method,psnr")
    assert len(csv_lines) == 1 + 2 * 3 + 3  # header, 2 scenes × 3 methods, 3 means
    markdown = (out / "report.md").read_text()
    assert "*paper, CAVE ×4: DualSR (its test split, reference only)*" in markdown
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 * 6  # 4 against HR, 2 against the LR (curves, maps)
    assert 'class="paper"' in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_html_report_renders_in_headless_chromium(evaluated: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium)")
    out, _ = evaluated
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    page = (out / "report.html").resolve().as_uri()
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    match = re.search(r'data-images-loaded="(\d+)"', dom)
    assert match is not None, dom[:500]
    assert int(match.group(1)) == 12  # every figure decoded by the browser
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, *flags, "--window-size=1280,2000", f"--screenshot={shot}", page], capture_output=True, timeout=120
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20  # not a blank page


def test_bad_inputs_are_one_line_errors(hr_folder: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(hr_folder), "-o", str(tmp_path), "--pixel", "3"], terminal_width=200)
    assert result.exit_code == 2
    assert "--pixel takes ROW,COL" in result.output
    result = runner.invoke(app, ["eval", str(hr_folder), "-o", str(tmp_path), "--band", "40"], terminal_width=200)
    assert result.exit_code == 2
    assert "bands [40] do not exist" in result.output
    result = runner.invoke(
        app, ["eval", str(hr_folder), "-o", str(tmp_path), "--lr", str(tmp_path), "--no-figures"], terminal_width=300
    )
    assert result.exit_code == 1  # every scene fails: no LR to pair with
    assert "no LR scene a.<" in result.output
    assert "to pair with HR scene a" in " ".join(result.output.split())


def test_demo_writes_a_report_and_says_where(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["demo", "-o", str(tmp_path / "demo"), "--synthetic", "1", "--size", "96"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo" / "report.html").is_file()
    assert "report.html" in result.output
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["methods"] == ["bicubic", "coarse", "fine"]
    assert sorted(scene["name"] for scene in report["scenes"]) == ["aviris_san_diego", "example_0"]
    for scene in report["scenes"]:  # the demo's outputs go back to their LR: none is suspect
        assert set(scene["consistency"]) == {"bicubic", "coarse", "fine"}
        assert not [method for method, f in scene["consistency"].items() if f["suspect"]], scene["consistency"]


def test_the_demo_shows_the_method_helping_on_every_scene(tmp_path: Path) -> None:
    # The default demo (the shipped real scene, weights auto) must show the fine stage beating bicubic in PSNR and
    # SAM on every scene: the first thing a new user sees. Measured with the shipped weights: AVIRIS San Diego fine
    # 29.60 dB / 1.492° against bicubic 28.51 dB / 1.533°.
    from dualsr_deploy.evaluation.demo import run_demo

    report, _paths = run_demo(tmp_path / "demo")
    assert [scene.name for scene in report.scenes] == ["aviris_san_diego"]
    for scene in report.scenes:
        fine, bicubic = scene.scores["fine"], scene.scores["bicubic"]
        assert fine["psnr"] > bicubic["psnr"] + 0.5, scene.name
        assert fine["sam"] < bicubic["sam"], scene.name
        assert scene.weights is not None
        assert "189 bands (more than 64), no wavelengths" in scene.weights


def test_scenes_the_weights_were_trained_on_are_marked(tmp_path: Path) -> None:
    # The shipped weights' provenance lists their training scenes; a scene of that name is marked, and the
    # held-out mean is reported apart.
    write_scene(tmp_path / "hr" / "beads.h5", synthesize(3, size=64, bands=31))
    write_scene(tmp_path / "hr" / "other.h5", synthesize(4, size=64, bands=31))
    options = EvalOptions(tile=16, figures=False)
    report = evaluate_archive(tmp_path / "hr", options)
    assert {s.name: s.in_training for s in report.scenes} == {"beads": True, "other": False}
    assert report.mixed
    held = report.mean("fine", held_out_only=True)
    assert held["psnr"] == pytest.approx(report.scenes[1].scores["fine"]["psnr"])
    paths = write_reports(report, tmp_path / "out", options)
    assert "beads †" in paths["md"].read_text()
    assert "not seen in training" in paths["html"].read_text()


def test_eval_scores_valid_pixels_of_good_bands_and_clean_ones_on_request(tmp_path: Path) -> None:
    """An HR scene with a no-data corner (NaN) and a bad band (all no-data): scores come from the valid pixels of
    the good bands, equal to the masked metrics computed directly; --clean-only scores fewer pixels."""
    hr = synthesize(3, size=160, bands=12)
    cube = hr.cube.copy()
    cube[:, :16, :16] = np.nan
    cube[7] = np.nan
    folder = tmp_path / "hr"
    write_scene(folder / "holes.npy", Scene("holes", cube, hr.meta))
    reports = {}
    for flag in ([], ["--clean-only"]):
        out = tmp_path / ("clean" if flag else "valid")
        result = runner.invoke(app, ["eval", str(folder), "-o", str(out), "--no-figures", *flag])
        assert result.exit_code == 0, result.output
        reports[bool(flag)] = json.loads((out / "report.json").read_text())["scenes"][0]
    valid, clean = reports[False], reports[True]
    assert valid["quality"]["invalid"] > 0
    assert valid["quality"]["filled"] > 0
    assert valid["quality"]["clean"] > 0
    assert valid["quality"] == clean["quality"]
    assert any("11 good bands" in note for note in valid["notes"])
    scored = [int(note.split()[2]) for s in (valid, clean) for note in s["notes"] if note.startswith("scored over")]
    assert scored[0] > scored[1] > 0
    for scores in valid["scores"].values():
        assert all(np.isfinite(v) for v in scores.values())
    assert valid["scores"]["fine"]["psnr"] > valid["scores"]["bicubic"]["psnr"]
