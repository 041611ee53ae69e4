"""Tables stay readable at 80 columns (essential columns, long texts as notes under the table, names never folded
into one-letter lines) and show everything at 120 and more: ``dualsr infer`` with a failed scene, ``dualsr bench``
and ``dualsr data info``, rendered through Typer's ``CliRunner`` with ``COLUMNS`` set."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dualsr_deploy.cli.common import Column, fitted_table
from dualsr_deploy.cli.main import app
from dualsr_deploy.data.formats import write_scene
from tests.infer.conftest import lr_scene

runner = CliRunner()
LONG_NAME = "a_rather_long_scene_name_from_a_real_archive_2024_07_24"
BROKEN = "broken_granule_with_a_long_name"


def table_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if any(c in line for c in "│┃┏┗┡└")]


def first_column(output: str) -> str:
    """The first column's text, its wrapped lines joined (a name folded into one-letter lines would still join,
    so the column's width is checked too)."""
    cells = [line.split("│")[1] for line in output.splitlines() if line.startswith("│")]
    assert all(len(cell) >= 12 for cell in cells), output
    return "".join(cell.strip() for cell in cells)


def check_fits(output: str, width: int) -> None:
    lines = table_lines(output)
    assert lines, output
    assert max(len(line) for line in lines) <= width, output


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tables")
    write_scene(folder / f"{LONG_NAME}.h5", lr_scene(0, 16, 5))
    (folder / f"{BROKEN}.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    return folder


def test_fitted_table_drops_columns_and_moves_long_texts_under_the_table() -> None:
    columns = [
        Column("scene", text=True),
        Column("seconds", "s", "right"),
        Column("detail", None),
        Column("error", note=True),
    ]
    rows = [["one", "1.0", "x", ""], ["two", "2.0", "y", "something went wrong in a long way"]]
    narrow, notes = fitted_table("t", columns, rows, width=80)
    assert [c.header for c in narrow.columns] == ["scene", "s", "note"]
    assert notes == ["[1] two: something went wrong in a long way"]
    wide, notes = fitted_table("t", columns, rows, width=130)
    assert [c.header for c in wide.columns] == ["scene", "seconds", "detail", "error"]
    assert notes == []


@pytest.mark.parametrize("width", [80, 160])
def test_data_info_fits(archive: Path, width: int) -> None:
    result = runner.invoke(app, ["data", "info", str(archive)], env={"COLUMNS": str(width)})
    assert result.exit_code == 1, result.output  # one entry cannot be read
    check_fits(result.output, width)
    assert LONG_NAME in first_column(result.output)
    assert BROKEN in first_column(result.output)
    if width < 120:
        assert "[1] " + BROKEN in result.output  # the reason, whole, under the table


@pytest.mark.parametrize("width", [80, 160])
def test_infer_summary_with_a_failed_scene_fits(archive: Path, tmp_path: Path, width: int) -> None:
    args = ["infer", str(archive), "-o", str(tmp_path / "out"), "--stage", "coarse", "--tile", "16"]
    result = runner.invoke(app, args, env={"COLUMNS": str(width)})
    assert result.exit_code == 1, result.output
    check_fits(result.output, width)
    header = next(line for line in table_lines(result.output) if "scene" in line and "status" in line)
    if width < 120:
        assert "note" in header
        assert "SAM weight" not in header
        assert f"[1] {BROKEN}:" in result.output
    else:
        assert "error" in header
        assert "SAM weight" in header
        assert "mode" in header
    assert LONG_NAME in first_column(result.output)
    assert "1 done, 1 failed" in result.output


@pytest.mark.parametrize("width", [80, 200])
def test_bench_table_fits(tmp_path: Path, width: int) -> None:
    args = ["bench", "--size", "32", "--tile", "8", "--repeats", "1", "--backend", "torch", "--no-baseline"]
    result = runner.invoke(app, args, env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    check_fits(result.output, width)
    header = next(line for line in table_lines(result.output) if "backend" in line)
    assert "median s" in header
    assert ("p90 s" in header) == (width >= 120)
    rows = [line for line in table_lines(result.output) if line.startswith("│")]
    assert rows
    assert all(line.rstrip("│ ").endswith("MiB") for line in rows)  # the last column whole, not cropped


def test_backend_and_its_old_name_engine_are_the_same_option(archive: Path, tmp_path: Path) -> None:
    for flag in ("--backend", "--engine"):
        args = ["infer", str(archive), "-o", str(tmp_path / flag), "--dry-run", flag, "torch"]
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["infer", str(archive), "-o", str(tmp_path / "x"), "--backend", "tensorrt"])
    assert bad.exit_code == 2
    assert "unknown backend 'tensorrt'" in bad.output
