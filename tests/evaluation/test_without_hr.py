"""``dualsr eval --lr LR --sr SR`` without HR: each output against its own input, beside bicubic, with the figures
``dualsr infer`` recorded, per-band curves, disagreement maps and the misalignment phase correlation finds; a
shifted output is marked suspect and the true one is not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data import read_scene, write_scene
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.evaluation.without_hr import misalignment

runner = CliRunner()


def textured(seed: int, bands: int = 10, size: int = 40) -> np.ndarray:
    """Smooth but not periodic: random fields low-passed, so phase correlation has structure to lock on."""
    from scipy.ndimage import gaussian_filter

    generator = np.random.default_rng(seed)
    base = gaussian_filter(generator.random((size, size)), 2.0)
    base = (base - base.min()) / (base.max() - base.min())
    return np.stack([0.1 + 0.6 * base * (0.8 + 0.02 * b) for b in range(bands)]).astype(np.float32)


def test_phase_correlation_finds_a_known_shift() -> None:
    import torch

    from dualsr_deploy.ops.imresize import imresize

    lr = textured(0, size=64)
    scene = Scene("a", lr, SceneMeta("x", "hdf5"))
    sr = imresize(torch.from_numpy(lr).double(), 2).numpy().astype(np.float32)
    assert max(abs(v) for v in misalignment(scene, sr, 2)) < 0.05
    rows, cols = misalignment(scene, np.roll(sr, 2, axis=2), 2)  # two output pixels: one LR pixel to the right
    assert abs(rows) < 0.15
    assert cols == pytest.approx(1.0, abs=0.2)


def test_eval_without_hr_scores_outputs_against_their_inputs_and_flags_a_shifted_one(tmp_path: Path) -> None:
    for index in range(2):
        write_scene(tmp_path / "lr" / f"s{index}.h5", Scene(f"s{index}", textured(index), SceneMeta("x", "hdf5")))
    args = ["infer", str(tmp_path / "lr"), "-o", str(tmp_path / "sr"), "--scale", "2", "--tile", "16"]
    assert runner.invoke(app, args).exit_code == 0
    records = {r["name"]: r for r in map(json.loads, (tmp_path / "sr" / "manifest.jsonl").read_text().splitlines())}
    shifted, foreign, units = tmp_path / "shifted", tmp_path / "foreign", tmp_path / "units"
    for folder in (shifted, foreign, units):
        shutil.copytree(tmp_path / "sr", folder)
    for path in shifted.glob("*.h5"):  # the same outputs, one output pixel to the right
        scene = read_scene(path)
        write_scene(path, Scene(scene.name, np.roll(scene.cube, 1, axis=2), scene.meta))
    (foreign / "s0.h5").rename(foreign / "tmp.h5")  # each scene's output under the other's name
    (foreign / "s1.h5").rename(foreign / "s0.h5")
    (foreign / "tmp.h5").rename(foreign / "s1.h5")
    for path in units.glob("*.h5"):  # values in other units (×10) than the input's
        scene = read_scene(path)
        meta = scene.meta.replace(scale_factor=scene.meta.scale_factor * 10)
        write_scene(path, Scene(scene.name, scene.cube, meta), units="source")
    args = ["eval", "--lr", str(tmp_path / "lr"), "--sr", str(tmp_path / "sr"), "--sr", str(shifted)]
    args += ["--sr", str(foreign), "--sr", str(units)]
    result = runner.invoke(app, [*args, "--scale", "2", "-o", str(tmp_path / "report")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["methods"] == ["bicubic", "sr", "shifted", "foreign", "units"]
    for scene in report["scenes"]:
        figures = scene["figures"]
        recorded = records[scene["name"]]["consistency"]
        assert figures["sr"]["area"]["psnr_db"] == pytest.approx(recorded["area"]["psnr_db"], abs=2e-3)
        assert figures["sr"]["suspect"] is None
        assert figures["bicubic"]["suspect"] is None
        for broken in ("shifted", "foreign", "units"):
            assert figures[broken]["suspect"], (scene["name"], broken, figures[broken])
        assert figures["sr"]["area"]["psnr_db"] > figures["bicubic"]["area"]["psnr_db"]
        assert len(scene["band_psnr_db"]["sr"]) == 10
    assert "suspect s0 (shifted)" in " ".join(result.output.split())
    csv_rows = (tmp_path / "report" / "report.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 2 * 5 * 2  # header, 2 scenes × 5 methods × 2 operators
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64") == 4  # per scene: curves and maps
    assert "Consistency without ground truth" in (tmp_path / "report" / "report.md").read_text()


def test_eval_without_hr_needs_both_folders(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "--lr", str(tmp_path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "--lr LR and --sr SR" in " ".join(result.output.split())


def test_eval_with_hr_gains_the_consistency_section(tmp_path: Path) -> None:
    from dualsr_deploy.data.synth import synthesize

    write_scene(tmp_path / "hr" / "a.h5", synthesize(0, size=32, bands=8))
    args = ["eval", str(tmp_path / "hr"), "-o", str(tmp_path / "report"), "--no-figures", "--tile", "16"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    (scene,) = json.loads((tmp_path / "report" / "report.json").read_text())["scenes"]
    assert set(scene["consistency"]) == set(scene["scores"])  # bicubic, coarse and fine
    assert not [m for m, f in scene["consistency"].items() if f["suspect"]]
    assert "## Consistency with the LR (no HR needed)" in (tmp_path / "report" / "report.md").read_text()
    assert "Consistency with the LR (no HR needed)" in (tmp_path / "report" / "report.html").read_text()
