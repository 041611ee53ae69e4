"""What every command module shares: the consoles, turning a :class:`DualSRError` into one line and exit status 2,
options written once (sizes, normalisation, the weights), the ``--config`` TOML machinery, progress bars, and
tables that stay readable at any terminal width.

Command modules import this module, never :mod:`dualsr_deploy.cli.main` (which imports them), so each one
imports on its own.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dualsr_deploy.errors import DualSRError, InputError

if TYPE_CHECKING:
    from dualsr_deploy.data.archive import SkippedFile

console = Console()
error_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

EXIT_USER_ERROR = 2
WIDE = 120  # terminal columns from which tables show every column
PRECISION_HELP = (
    "auto (default): per device and weights, the fastest precision that passed the quality rule on the weights' "
    "held-out scenes (PSNR at most 0.02 dB lower, SAM at most 0.02° higher than fp32, per scene; `dualsr card "
    "--precision`), else fp32 (shipped: bf16 for the airborne family and cave ×2 on CPUs with native bf16; cave ×4 "
    "stays fp32). fp32: the reference, bit-reproducible. bf16: ~1.6-3x faster on CPUs with native bf16 (torch, "
    "openvino) and on CUDA. bf16-mixed: torch's bf16 with the upsampling tail in fp32. fp16: CUDA only, and exported "
    "graphs and plans. int8: an INT8 graph made by dualsr export --int8 (only where it passed the rule; onnx, openvino "
    "on a CPU)."
)
NEIGHBOUR_RULES = ("paper", "reference")  # archs.neighbours.NEIGHBOUR_RULES (a test keeps them equal)
TENSORRT_MODES = ("auto", "require", "off")  # export.pipeline.TENSORRT_MODES (likewise)
DEVICE_HELP = "cpu or cuda[:N] (default: CUDA when there is one, else the CPU); for openvino: CPU, GPU, NPU …"
ENGINES_HELP = (
    "Artefacts folder: exported graphs, OpenVINO IR and TensorRT plans (by variant), found or exported there."
)
RESUME_HELP = "Continue the run in --out where it stopped (done work is kept; what changed is redone)."
TO_HELP = (
    "Output format by suffix: .h5, .npy, .mat, .tif (.cog.tif: a Cloud-Optimized GeoTIFF), .hdr (ENVI), .zarr, or "
    ".nc (EMIT and AVIRIS-3 inputs, in their structure)."
)
NORMALISE_HELP = "auto | dtype | max | none | percentile[:P] | fixed:F (how values become [0, 1])"
AUTO_BACKEND_HELP = (
    "of the backends installed here for the device, the one that ran the weights' held-out scenes fastest in the "
    "precision it runs (`dualsr card --precision` times them), else torch, per weights family under --weights auto; "
    "said in the terminal and the manifest."
)
BACKEND_HELP = (
    "torch, onnx (ONNX Runtime), trt (TensorRT plans; needs a GPU) or openvino (OpenVINO IR; CPU, or an OpenVINO "
    "device given by --device). --engine is an alias."
)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a :class:`DualSRError` as one red line and exit with status 2, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DualSRError as exc:
            error_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USER_ERROR) from None

    return wrapper


def old_spellings(argv: list[str]) -> list[str]:
    """Command lines of earlier versions, rewritten to today's: ``dualsr train … --resume RUN/last.pt`` (a path)
    is ``--resume-from RUN/last.pt``; ``--resume`` alone is now a flag."""
    args = list(argv)
    if args[:1] == ["train"]:
        for index, arg in enumerate(args[:-1]):
            if arg == "--resume" and args[index + 1].endswith(".pt") and not args[index + 1].startswith("-"):
                args[index] = "--resume-from"
    return args


def shortened(text: str, width: int = 28) -> str:
    """``text`` cut in the middle to ``width`` characters (``EMIT_L2A_RFL…2309112_002``), so that progress bars keep
    their bar and numbers at 80 columns; the ends, which tell scenes apart, are kept."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def parse_bytes(text: str) -> int:
    """``512M``, ``4G``, ``1.5GiB``, ``2000000`` → bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", text)
    if match is None:
        raise InputError(f"cannot read {text!r} as a size; write e.g. 512M or 4G")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


def progress_bar() -> Progress:
    """A bar with a description, done/total and the time remaining."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )


@dataclass(frozen=True)
class Column:
    """A table column. ``narrow``: its header below :data:`WIDE` columns (None: dropped there). ``text``: a name
    or path, which may wrap (every other column keeps its width, so names are not squeezed to a letter a line).
    ``note``: long free text (errors), shown in the table only when wide, else as numbered notes under it."""

    header: str
    narrow: str | None = ""  # "" : the same header
    justify: Literal["left", "right"] = "left"
    text: bool = False
    note: bool = False


def fitted_table(
    title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]], *, width: int | None = None
) -> tuple[Table, list[str]]:
    """A Rich table of ``rows`` (one cell per column, Rich markup allowed) for a terminal ``width`` wide (default:
    the console's), and the notes to print under it (the ``note`` columns' texts, when narrow)."""
    wide = (width if width is not None else console.width) >= WIDE
    shown = [i for i, column in enumerate(columns) if wide or column.narrow is not None]
    notes: list[str] = []
    table = Table(title=title, title_justify="left")
    for i in shown:
        column = columns[i]
        header = column.header if wide or not column.narrow else column.narrow
        if column.note and not wide:
            header = "note"
        table.add_column(
            header,
            justify=column.justify,
            overflow="fold",
            no_wrap=not (column.text or (column.note and wide)),
            min_width=12 if column.text else None,
        )
    for row in rows:
        cells = []
        for i in shown:
            cell = row[i]
            if columns[i].note and not wide and cell:
                notes.append(f"[{len(notes) + 1}] {row[0]}: {cell}")
                cell = f"[{len(notes)}]"
            cells.append(cell)
        table.add_row(*cells)
    return table, notes


def print_skipped(skipped: Sequence[SkippedFile], root: Path) -> None:
    """The files of an archive folder that are not scenes, each with the reason (nothing is dropped silently)."""
    if not skipped:
        return
    console.print(f"[yellow]{len(skipped)} file(s) not read as scenes:[/]")
    for item in skipped:
        shown = item.path.relative_to(root) if item.path.is_relative_to(root) else item.path
        console.print(f"  {escape(str(shown))}: {escape(item.reason)}", highlight=False)


def print_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    """:func:`fitted_table`, printed with its notes."""
    table, notes = fitted_table(title, columns, rows)
    console.print(table)
    for note in notes:
        console.print(note, highlight=False)


# Options more than one command takes, declared once (as rasterio's rio/options.py does)
WEIGHTS_OPTION = typer.Option(
    None,
    "--weights",
    help="×scale weights: auto (the default: airborne for scenes whose wavelengths reach beyond 1000 nm, or with "
    "more than 64 bands when none are given; cave otherwise), cave, airborne, or a checkpoint PATH.",
    rich_help_panel="Model and weights",
)
WEIGHTS_HALF_OPTION = typer.Option(
    None,
    "--weights-half",
    help="×scale/2 weights for the dual stage: auto, cave, airborne or PATH (default: the --weights family, or "
    "auto after a PATH).",
    rich_help_panel="Model and weights",
)


def load_config(ctx: typer.Context, value: Path | None) -> Path | None:
    """``--config FILE``: a TOML table of this command's options by their long names (``scale = 2``,
    ``memory-budget = "2G"``, ``format = "envi"``), taken as defaults that the command line overrides."""
    if value is None:
        return None
    import tomllib

    try:
        table = tomllib.loads(value.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise typer.BadParameter(f"{value}: {error}") from None
    names = {
        opt.lstrip("-"): param.name
        for param in ctx.command.params
        for opt in getattr(param, "opts", [])
        if opt.startswith("--") and param.name not in ("config", "help")
    }
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise typer.BadParameter(f"{value}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    ctx.default_map = {**(ctx.default_map or {}), **{names[key]: item for key, item in table.items()}}
    return value


def resolved_toml(settings: dict[str, object]) -> str:
    """``settings`` (option long name → value) as a TOML table ``--config`` reads back; unset options left out."""
    lines = []
    for key, value in settings.items():
        if value is None or value == [] or value == ():
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        elif isinstance(value, (list, tuple)):
            text = "[" + ", ".join(repr(v) if isinstance(v, (int, float)) else _quoted(str(v)) for v in value) + "]"
        else:
            text = _quoted(str(value))
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = [
    "AUTO_BACKEND_HELP",
    "BACKEND_HELP",
    "EXIT_USER_ERROR",
    "NORMALISE_HELP",
    "WEIGHTS_HALF_OPTION",
    "WEIGHTS_OPTION",
    "WIDE",
    "Column",
    "console",
    "error_console",
    "fitted_table",
    "load_config",
    "parse_bytes",
    "print_skipped",
    "print_table",
    "progress_bar",
    "resolved_toml",
    "user_errors",
]
