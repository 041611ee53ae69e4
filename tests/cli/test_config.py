"""``dualsr infer --config FILE``: options from TOML by their long names, the command line overriding them;
``--dry-run`` prints the resolved configuration, which runs the same job again."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dualsr_deploy.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "dualsr_deploy" / "examples"
runner = CliRunner()


def resolved(output: str) -> str:
    return output.split("runs it again):", 1)[1].strip()


def test_config_sets_options_the_command_line_overrides_and_dry_run_round_trips(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('scale = 2\nmemory-budget = "2G"\nformat = "envi"\nstage = "coarse"\nunits = "normalised"\n')
    args = ["infer", str(EXAMPLES), "-o", str(tmp_path / "out"), "--config", str(config), "--dry-run"]
    first = runner.invoke(app, [*args, "--scale", "4"], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    text = resolved(first.output)
    assert "scale = 4" in text  # the command line wins
    assert 'stage = "coarse"' in text
    assert 'format = "envi"' in text
    assert 'units = "normalised"' in text
    assert 'memory-budget = "2147483648"' in text
    # --weights auto: each family chooses its backend and precision, so they stay auto (a value would hold the
    # airborne scenes to CAVE's choice)
    assert 'precision = "auto"' in text
    assert 'backend = "auto"' in text
    assert "aviris_san_diego.hdr" in first.output  # the plan used the file's format
    again_file = tmp_path / "again.toml"
    again_file.write_text(text + "\n")
    again = runner.invoke(
        app, ["infer", str(EXAMPLES), "--config", str(again_file), "--dry-run"], env={"COLUMNS": "200"}
    )
    assert again.exit_code == 0, again.output
    assert resolved(again.output) == text
    assert not (tmp_path / "out").exists()
    one = runner.invoke(app, [*args, "--scale", "4", "--weights", "cave"], env={"COLUMNS": "200"})
    assert one.exit_code == 0, one.output
    assert 'precision = "fp32"' in resolved(one.output)  # one family: auto's choice, resolved (cave ×4: fp32)
    assert 'backend = "auto"' not in resolved(one.output)


def test_an_unknown_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("scael = 2\n")
    result = runner.invoke(app, ["infer", str(EXAMPLES), "-o", str(tmp_path / "o"), "--config", str(config)])
    assert result.exit_code == 2
    assert "scael" in result.output
