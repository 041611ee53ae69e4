"""The CLI skeleton: version, info, convert, and how errors reach the user."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from tests.helpers import random_coarsr

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("version", "info", "convert"):
        assert command in result.output


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert "dualsr-deploy" in result.output
    assert "torch" in result.output


def test_info_of_published_checkpoint(shared_reference: Path) -> None:
    result = runner.invoke(app, ["info", str(shared_reference / "coarsr" / "coarsr_x4_f16_b8.pth"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["scale"], info["n_feats"], info["neighbour_rule"]) == (4, 16, "reference")


def test_convert_then_info(tmp_path: Path, shared_reference: Path) -> None:
    source = shared_reference / "coarsr" / "coarsr_x2_f16_b8.pth"
    target = tmp_path / "x2.safetensors"
    result = runner.invoke(app, ["convert", str(source), str(target), "--bands", "8"])
    assert result.exit_code == 0, result.output
    shown = runner.invoke(app, ["info", str(target)])
    assert shown.exit_code == 0, shown.output
    for text in ("dualsr", "×2", "reference (metadata)", "converted_from"):
        assert text in shown.output
    again = runner.invoke(app, ["convert", str(source), str(target)])
    assert again.exit_code == 2
    assert "--force" in again.output


def test_corrupt_checkpoint_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    assert "bad.pth" in result.output
    assert "Traceback" not in result.output


def test_python_dash_m_works(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    torch.save(random_coarsr(3).state_dict(), path)
    result = subprocess.run(
        [sys.executable, "-m", "dualsr_deploy", "info", str(path), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["scale"] == 3
