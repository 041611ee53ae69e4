"""``dualsr --help`` and every ``dualsr CMD --help`` answer without importing torch (seconds on a cold machine), and
the option vocabularies the CLI spells out for help stay equal to the package's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_help_imports_no_torch() -> None:
    code = """
import sys
import typer.main
from typer.testing import CliRunner
from dualsr_deploy.cli.main import app

def walk(group, prefix):
    yield prefix
    for name, sub in getattr(group, "commands", {}).items():
        yield from walk(sub, [*prefix, name])

runner = CliRunner()
commands = list(walk(typer.main.get_command(app), []))
assert len(commands) > 15, commands
for command in commands:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, (command, result.output)
    assert "torch" not in sys.modules, f"dualsr {command} --help imported torch"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_help_vocabularies_match_the_package() -> None:
    from dualsr_deploy.archs.neighbours import NEIGHBOUR_RULES
    from dualsr_deploy.cli import common
    from dualsr_deploy.export.build import TENSORRT_MODES

    assert common.NEIGHBOUR_RULES == NEIGHBOUR_RULES
    assert common.TENSORRT_MODES == TENSORRT_MODES


def test_old_spellings_still_work() -> None:
    from dualsr_deploy.cli.common import old_spellings

    assert old_spellings(["train", "s.h5", "--out", "run", "--resume", "run/last.pt"]) == [
        "train", "s.h5", "--out", "run", "--resume-from", "run/last.pt"
    ]  # fmt: skip
    assert old_spellings(["train", "s.h5", "--out", "run", "--resume"]) == ["train", "s.h5", "--out", "run", "--resume"]
    assert old_spellings(["infer", "a", "-o", "b", "--resume"]) == ["infer", "a", "-o", "b", "--resume"]


def test_export_takes_the_artefacts_folder_by_its_old_name_too(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dualsr_deploy.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert "--engines" in result.output
    assert "--out " not in result.output  # the old spelling is accepted but not advertised
    args = ["export", "--scale", "4", "--bands", "8", "--precision", "fp32", "--tensorrt", "off"]
    old = runner.invoke(app, [*args, "--out", str(tmp_path / "old")])
    assert old.exit_code == 0, old.output
    assert list((tmp_path / "old").rglob("*.onnx"))  # written where the old spelling pointed
