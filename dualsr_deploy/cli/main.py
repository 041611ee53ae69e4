"""The ``dualsr`` command line: the Typer app and its shared plumbing.

Each command group lives in a file of its own and is a thin translation onto one library function; only this
layer renders with Rich.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from dualsr_deploy._version import __version__
from dualsr_deploy.errors import DualSRError

app = typer.Typer(
    name="dualsr",
    help="DualSR hyperspectral super-resolution: checkpoints, export, inference, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
console = Console()
error_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

EXIT_USER_ERROR = 2


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


@app.command()
def version() -> None:
    """Print the versions of dualsr-deploy and of the runtimes it can use."""
    import torch

    console.print(f"dualsr-deploy {__version__}")
    console.print(f"python {platform.python_version()}, torch {torch.__version__}")
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
    console.print(f"CUDA: {cuda}")
    try:
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
        console.print(f"onnxruntime {onnxruntime.__version__} ({providers})")
    except ImportError:
        console.print(escape("onnxruntime: not installed (pip install 'dualsr-deploy[cpu]' or '[gpu]')"))


def _register() -> None:
    from dualsr_deploy.cli import bench, checkpoint, data, evaluate, export, infer, train

    checkpoint.register(app)
    data.register(app)
    export.register(app)
    infer.register(app)
    evaluate.register(app)
    bench.register(app)
    train.register(app)


_register()


def main() -> None:
    app()
