"""``dualsr data``: synth → info → degrade → convert → prepare, end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data import read_scene
from dualsr_deploy.data.patches import read_store_info

runner = CliRunner()


def test_data_pipeline(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    result = runner.invoke(app, ["data", "synth", str(scenes), "--count", "3", "--size", "32", "--bands", "8"])
    assert result.exit_code == 0, result.output
    assert len(list(scenes.glob("*.h5"))) == 3
    assert len(list((scenes / "previews").glob("*.png"))) == 3

    result = runner.invoke(app, ["data", "info", str(scenes), "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    assert [e["shape"] for e in listing["scenes"]] == [[8, 32, 32]] * 3
    previews = sorted((scenes / "previews").glob("*.png"))
    assert listing["skipped"] == [{"path": str(p), "reason": "unknown format (.png)"} for p in previews]

    result = runner.invoke(app, ["data", "degrade", str(scenes), str(tmp_path / "lr"), "--scale", "4", "--blur", "5:1"])
    assert result.exit_code == 0, result.output
    lr = read_scene(next((tmp_path / "lr").glob("*.h5")))
    assert lr.shape == (8, 8, 8)
    assert "blur 5:1" in lr.meta.attrs["degradation"]

    result = runner.invoke(app, ["data", "convert", str(tmp_path / "lr"), str(tmp_path / "mat"), "--to", ".mat"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "mat").glob("*.mat"))) == 3

    store = tmp_path / "patches.h5"
    args = ["data", "prepare", str(scenes), str(store), "--scale", "2", "--lr-patch", "8", "--validation-count", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_store_info(store).patches == 2 * (4 + 1 + 1)  # 32 px: 16 px patches at 1, 0.75, 0.5
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--force" in result.output


def test_info_reports_broken_files_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 MAT-file, then nothing")
    runner.invoke(app, ["data", "synth", str(tmp_path), "--count", "1", "--size", "16", "--bands", "5"])
    result = runner.invoke(app, ["data", "info", str(tmp_path)])
    assert result.exit_code == 1
    assert "bad" in result.output
    assert "1 readable, 1 failed" in result.output


def test_missing_archive_is_a_user_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "info", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "no such file" in result.output
