"""``dualsr bench``: the thin layer over :func:`dualsr_deploy.bench.run_bench`."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from dualsr_deploy.cli.common import DEVICE_HELP, Column, console, print_table, user_errors

if TYPE_CHECKING:
    from dualsr_deploy.bench import Row


@user_errors
def bench(
    scale: list[int] | None = typer.Option(
        None, help="Scales to measure (repeat; default 4).", rich_help_panel="Scene"
    ),
    size: int = typer.Option(
        512, help="HR side of the scene (CAVE: 512); 31 bands by default.", rich_help_panel="Scene"
    ),
    bands: int = typer.Option(31, help="Bands of the scene.", rich_help_panel="Scene"),
    tile: list[int] | None = typer.Option(
        None, help="LR tile sizes (repeat; default 64).", rich_help_panel="What to time"
    ),
    batch: int | None = typer.Option(
        None,
        help="Tiles per backend call (every call padded to it); default as dualsr infer: 1 on a CPU, 8 on a GPU.",
        rich_help_panel="What to time",
    ),
    backend: list[str] | None = typer.Option(
        None,
        help="torch, onnx, trt, openvino (repeat; default torch and onnx, and openvino when installed).",
        rich_help_panel="What to time",
    ),
    precision: list[str] | None = typer.Option(
        None,
        help="fp32, fp16, bf16 (repeat; default fp32, and bf16 on a CPU with native bf16).",
        rich_help_panel="What to time",
    ),
    device: str | None = typer.Option(None, help=DEVICE_HELP, rich_help_panel="What to time"),
    model: str = typer.Option(
        "shipped", help="shipped (n_feats 16, n_blocks 1) or paper (64, 2); random weights.", rich_help_panel="Scene"
    ),
    repeats: int = typer.Option(3, help="Timed runs after one warm-up.", rich_help_panel="What to time"),
    baseline: bool = typer.Option(
        True, help="Time the published per-band eager loop too (float32).", rich_help_panel="What to time"
    ),
    isolate: bool = typer.Option(
        True,
        help="Time each configuration in a fresh process, so that its peak memory is its own (--no-isolate: all in "
        "this process, faster, but a configuration timed after another reads low).",
        rich_help_panel="What to time",
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the full results as JSON.", rich_help_panel="Output"
    ),
    plot: Path | None = typer.Option(
        None, help="Write a PNG of throughput against tile size.", rich_help_panel="Output"
    ),
    history: Path | None = typer.Option(
        None, help="Append the results (one JSON line) to this file.", rich_help_panel="Output"
    ),
) -> None:
    """Time each backend and precision on a CAVE-size scene against the eager loop and the matmul ceiling."""
    from dualsr_deploy.bench import SPREAD_WARNING, BenchOptions, run_bench, write_outputs
    from dualsr_deploy.bench.advice import default_backends, default_precisions
    from dualsr_deploy.infer.options import default_batch
    from dualsr_deploy.runtimes import default_device

    chosen = device or default_device()
    options = BenchOptions(
        scales=tuple(scale or [4]),
        size=size,
        bands=bands,
        tiles=tuple(tile or [64]),
        batch=batch if batch is not None else default_batch(chosen),
        backends=tuple(backend or default_backends()),
        precisions=tuple(precision or default_precisions(chosen)),
        device=chosen,
        model=model,
        repeats=repeats,
        baseline=baseline,
        isolate=isolate,
    )
    with tempfile.TemporaryDirectory() as work, console.status("benchmarking") as status:
        report = run_bench(options, work_dir=work, progress=lambda text: status.update(escape(text)))
    machine = report.machine
    title = (
        f"×{'/'.join(map(str, options.scales))}, {bands}×{size}×{size} HR scene, model {model}, {machine['device']}, "
        f"{machine['threads']} threads; matmul ceiling "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in machine["matmul_ceiling_gflops"].items())
    )
    columns = [
        Column("backend"),
        Column("prec.", "prec"),
        Column("×", "×", "right"),
        Column("tile", "tile", "right"),
        Column("median s", "median s", "right"),
        Column("p90 s", None, "right"),
        Column("min–max s", None, "right"),
        Column("scenes/s", None, "right"),
        Column("LR Mpx·bands/s", None, "right"),
        Column("GFLOP/s", "GFLOP/s", "right"),
        Column("of ceiling", None, "right"),
        Column("vs eager", None, "right"),
        Column("vs torch fp32", "vs torch", "right"),
        Column("peak memory", "memory", "right"),
    ]
    print_table(title, columns, [_cells(row) for row in report.rows])
    if any(row.to_dict()["noisy"] for row in report.rows):
        console.print(
            f"[yellow]±[/]: runs spread by more than {SPREAD_WARNING:.0%} of the median; the machine was busy"
        )
    for line in report.skipped:
        console.print(f"[yellow]skipped:[/] {escape(line)}")
    if report.recommendation:
        console.print(f"[bold]recommended[/] {escape(report.recommendation)}")
    write_outputs(report, json_path=json_out, plot_path=plot, history=history)
    for path in (json_out, plot, history):
        if path is not None:
            console.print(f"wrote {escape(str(path))}")


def _cells(row: Row) -> list[str]:
    data = row.to_dict()
    noisy = " [yellow]±[/]" if data["noisy"] else ""
    return [
        row.backend,
        row.precision,
        str(row.scale),
        "scene" if row.tile is None else str(row.tile),
        f"{row.median:.3f}{noisy}",
        f"{row.p90:.3f}",
        f"{min(row.times):.3f}–{max(row.times):.3f}",
        f"{data['scenes_per_s']:.3f}",
        f"{data['lr_mpx_bands_per_s']:.3f}",
        f"{row.gflops:.1f}",
        f"{data['fraction_of_ceiling']:.0%}",
        f"{data['speedup_vs_baseline']:.2f}×" if data["speedup_vs_baseline"] else "-",
        f"{data['speedup_vs_torch_fp32']:.2f}×" if data["speedup_vs_torch_fp32"] else "-",
        f"{row.peak_memory / 2**20:.0f} MiB",
    ]


def register(app: typer.Typer) -> None:
    app.command()(bench)
