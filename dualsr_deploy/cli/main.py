"""The ``dualsr`` command line: the Typer app, ``dualsr version``, and the command groups registered from their own
modules (one file per group; each imports :mod:`dualsr_deploy.cli.common`, never this module). Only this layer
renders with Rich; every command is a thin translation onto one library function."""

from __future__ import annotations

import platform

import typer
from rich.markup import escape

from dualsr_deploy._version import __version__
from dualsr_deploy.cli import bench, checkpoint, data, evaluate, export, infer, manifest, train
from dualsr_deploy.cli.common import console

app = typer.Typer(
    name="dualsr",
    help="DualSR hyperspectral super-resolution: checkpoints, export, inference, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the versions of dualsr-deploy and of the runtimes it can use."""
    import torch

    from dualsr_deploy.runtimes import onnxruntime_providers, openvino_devices, tensorrt_version

    console.print(f"dualsr-deploy {__version__}")
    console.print(f"python {platform.python_version()}, torch {torch.__version__}")
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
    console.print(f"CUDA: {cuda}")
    ort, providers = onnxruntime_providers()
    if ort is None:
        console.print(escape("onnxruntime: not installed (pip install 'dualsr-deploy[cpu]' or '[gpu]')"))
    else:
        console.print(f"onnxruntime {ort} ({', '.join(providers)})")
    openvino, devices = openvino_devices()
    if openvino is None:
        console.print(escape("openvino: not installed (pip install 'dualsr-deploy[openvino]')"))
    else:
        console.print(f"openvino {openvino} ({', '.join(devices)})")
    trt = tensorrt_version()
    console.print(f"tensorrt {trt}" if trt else escape("tensorrt: not installed (pip install 'dualsr-deploy[gpu]')"))


for group in (checkpoint, data, export, infer, manifest, evaluate, bench, train):
    group.register(app)


def main() -> None:
    import sys

    from dualsr_deploy.cli.common import old_spellings

    app(args=old_spellings(sys.argv[1:]), prog_name="dualsr")
