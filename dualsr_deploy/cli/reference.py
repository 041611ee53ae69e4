"""The command-line reference (``docs/reference/cli.md``), generated from the Typer app so that it cannot drift from
it: every command with its help, usage and options (grouped by help panel), each option with its names, default
and help. ``python -m dualsr_deploy.cli.reference > docs/reference/cli.md`` writes it; a test fails when the
committed page is stale."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from dualsr_deploy.cli.main import app

HEADER = """# Command-line reference

Generated from the `dualsr` command line itself (`python -m dualsr_deploy.cli.reference > docs/reference/cli.md`);
`dualsr COMMAND --help` says the same in the terminal. Sizes are written `512M`, `4G`, `1.5GiB`. Errors are one line
on stderr with exit status 2; `dualsr infer` exits 1 when some scene failed and 130 when interrupted.
"""


def _commands(group: Any, prefix: list[str]) -> Iterator[tuple[list[str], Any]]:
    if hasattr(group, "commands"):
        for name in sorted(group.commands):
            sub = group.commands[name]
            if getattr(sub, "hidden", False):
                continue
            yield [*prefix, name], sub
            yield from _commands(sub, [*prefix, name])


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _is_argument(param: Any) -> bool:
    return bool(param.param_type_name == "argument")


def _is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False))


_METAVARS = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH", bool: ""}


def _metavar(param: Any) -> str:
    """INTEGER, TEXT, PATH …: the kind of value an option takes, from its annotation."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", str)
    for kind in (annotation, *typing.get_args(annotation)):
        for inner in (kind, *typing.get_args(kind)):
            if inner in _METAVARS:
                return _METAVARS[inner]
    return "VALUE"


def _default(param: Any) -> str:
    if param.required:
        return "required"
    value: Any = param.default
    if _is_flag(param) and not param.secondary_opts:
        return "off" if not value else "on"
    if callable(value):
        return ""
    if _is_flag(param) and param.secondary_opts:
        return param.opts[0] if value else param.secondary_opts[0]
    if value is None or value == () or value == []:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return f"`{value}`"


def _names(param: Any) -> str:
    if _is_argument(param):
        return f"`{param.name.upper()}` (argument)"
    names = [*param.opts, *param.secondary_opts]
    metavar = "" if _is_flag(param) else f" {_metavar(param)}"
    if getattr(param, "multiple", False):
        metavar += " …"
    return ", ".join(f"`{name}`" for name in names) + metavar


def command_page(path: list[str], command: Any) -> str:
    lines = [f"## dualsr {' '.join(path)}", ""]
    help_text = (command.help or "").strip()
    if help_text:
        lines += [help_text.split("\f")[0].strip(), ""]
    if hasattr(command, "commands"):
        lines += ["Subcommands: " + ", ".join(f"`{name}`" for name in sorted(command.commands)), ""]
        return "\n".join(lines)
    arguments = [p.name.upper() for p in command.params if _is_argument(p)]
    lines += [f"`dualsr {' '.join([*path, '[OPTIONS]', *arguments])}`", ""]
    panels: dict[str, list[Any]] = {}
    for param in command.params:
        if getattr(param, "hidden", False) or param.name == "help":
            continue
        panel = getattr(param, "rich_help_panel", None) or ("Arguments" if _is_argument(param) else "")
        panels.setdefault(panel or "Options", []).append(param)
    for panel, params in panels.items():
        if len(panels) > 1:
            lines += [f"**{panel}**", ""]
        lines += ["| option | default | what it does |", "|---|---|---|"]
        for param in params:
            help_text = getattr(param, "help", None) or ""
            lines.append(f"| {_names(param)} | {_cell(_default(param))} | {_cell(help_text)} |")
        lines.append("")
    return "\n".join(lines)


def cli_reference() -> str:
    root = typer.main.get_command(app)
    pages = [HEADER]
    for path, command in _commands(root, []):
        pages.append(command_page(path, command))
    return "\n".join(pages).rstrip() + "\n"


def options_of_every_command() -> Iterator[tuple[str, str]]:
    """(command, option name) for every visible option of every command: what the reference must name."""
    root = typer.main.get_command(app)
    for path, command in _commands(root, []):
        for param in command.params:
            if getattr(param, "hidden", False) or _is_argument(param) or param.name == "help":
                continue
            for name in [*param.opts, *param.secondary_opts]:
                yield " ".join(path), name


if __name__ == "__main__":
    print(cli_reference(), end="")
