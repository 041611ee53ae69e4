"""The docs say what the code does: the command-line reference is generated from the app and names every option of
every command; the README stays a front door (short, no sprawling table rows) whose links resolve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"


def test_the_cli_reference_is_current() -> None:
    from dualsr_deploy.cli.reference import cli_reference

    assert CLI_PAGE.read_text() == cli_reference(), (
        "docs/reference/cli.md is stale: python -m dualsr_deploy.cli.reference > docs/reference/cli.md"
    )


def test_every_option_of_every_command_is_in_the_reference() -> None:
    from dualsr_deploy.cli.reference import options_of_every_command

    page = CLI_PAGE.read_text()
    sections = {m.group(1): m.start() for m in re.finditer(r"^## dualsr (.+)$", page, flags=re.M)}
    found = list(options_of_every_command())
    assert len(found) > 100
    for command, option in found:
        start = sections[command]
        end = min([p for p in sections.values() if p > start], default=len(page))
        assert f"`{option}`" in page[start:end], f"dualsr {command} {option} is not in docs/reference/cli.md"


def test_the_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 160, len(lines)
    long_rows = [line[:60] for line in lines if line.startswith("|") and len(line) > 200]
    assert not long_rows, long_rows
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(page.relative_to(ROOT / "docs")) in nav, f"{page} is not in mkdocs.yml's nav"


def test_the_manifest_reference_names_every_record_field() -> None:
    import dataclasses

    from dualsr_deploy.infer.manifest import SceneRecord

    page = (ROOT / "docs" / "reference" / "formats.md").read_text()
    table = page.split("## The manifest", 1)[1]
    for item in dataclasses.fields(SceneRecord):
        assert f"`{item.name}`" in table, f"SceneRecord.{item.name} is not in docs/reference/formats.md"
