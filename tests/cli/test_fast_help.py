"""``dualsr --help`` and every ``dualsr CMD --help`` answer without importing torch (seconds on a cold machine), and
the option vocabularies the CLI spells out for help stay equal to the package's own."""

from __future__ import annotations

import subprocess
import sys


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
    from dualsr_deploy.export.pipeline import TENSORRT_MODES

    assert common.NEIGHBOUR_RULES == NEIGHBOUR_RULES
    assert common.TENSORRT_MODES == TENSORRT_MODES
