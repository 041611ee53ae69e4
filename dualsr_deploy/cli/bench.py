"""``dualsr bench``: the thin layer over :func:`dualsr_deploy.bench.run_bench`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dualsr_deploy.cli.main import console, user_errors


@user_errors
def bench(
    scale: list[int] | None = typer.Option(None, help="Scales to measure (repeat; default 4)."),
    size: int = typer.Option(512, help="HR side of the scene (CAVE: 512); 31 bands by default."),
    bands: int = typer.Option(31, help="Bands of the scene."),
    tile: list[int] | None = typer.Option(None, help="LR tile sizes (repeat; default 64)."),
    batch: int = typer.Option(8, help="Tiles per engine call."),
    backend: list[str] | None = typer.Option(None, help="torch, onnx, trt (repeat; default torch and onnx)."),
    precision: list[str] | None = typer.Option(None, help="fp32, fp16, bf16 (repeat; default fp32)."),
    device: str = typer.Option("cpu", help="cpu or cuda[:N]."),
    model: str = typer.Option("shipped", help="shipped (n_feats 16, n_blocks 1) or paper (64, 2); random weights."),
    repeats: int = typer.Option(3, help="Timed runs after one warm-up."),
    baseline: bool = typer.Option(True, help="Time the published per-band eager loop too (float32)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full results as JSON."),
    plot: Path | None = typer.Option(None, help="Write a PNG of throughput against tile size."),
    history: Path | None = typer.Option(None, help="Append the results (one JSON line) to this file."),
) -> None:
    """Time each backend and precision on a CAVE-size scene against the eager loop and the matmul ceiling."""
    from dualsr_deploy.bench import SPREAD_WARNING, BenchOptions, run_bench, write_outputs

    options = BenchOptions(
        scales=tuple(scale or [4]),
        size=size,
        bands=bands,
        tiles=tuple(tile or [64]),
        batch=batch,
        backends=tuple(backend or ["torch", "onnx"]),
        precisions=tuple(precision or ["fp32"]),
        device=device,
        model=model,
        repeats=repeats,
        baseline=baseline,
    )
    with tempfile.TemporaryDirectory() as work, console.status("benchmarking") as status:
        report = run_bench(options, work_dir=work, progress=lambda text: status.update(escape(text)))
    machine = report.machine
    title = (
        f"×{'/'.join(map(str, options.scales))}, {bands}×{size}×{size} HR scene, model {model}, {machine['device']}, "
        f"{machine['threads']} threads; matmul ceiling "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in machine["matmul_ceiling_gflops"].items())
    )
    table = Table(title=title, title_justify="left")
    # A narrow terminal gets the essential columns; every figure is in --json.
    wide = console.width >= 150
    columns = ["backend", "prec.", "×", "tile", "median s"]
    columns += ["p90 s", "min–max s", "scenes/s"] if wide else []
    columns += ["LR Mpx·bands/s", "GFLOP/s", "of ceiling", "vs eager", "peak memory"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("backend", "prec.") else "right", overflow="fold")
    for row in report.rows:
        data = row.to_dict()
        noisy = " [yellow]±[/]" if data["noisy"] else ""
        cells = {
            "backend": row.backend,
            "prec.": row.precision,
            "×": str(row.scale),
            "tile": "scene" if row.tile is None else str(row.tile),
            "median s": f"{row.median:.3f}{noisy}",
            "p90 s": f"{row.p90:.3f}",
            "min–max s": f"{min(row.times):.3f}–{max(row.times):.3f}",
            "scenes/s": f"{data['scenes_per_s']:.3f}",
            "LR Mpx·bands/s": f"{data['lr_mpx_bands_per_s']:.3f}",
            "GFLOP/s": f"{row.gflops:.1f}",
            "of ceiling": f"{data['fraction_of_ceiling']:.0%}",
            "vs eager": f"{data['speedup_vs_baseline']:.2f}×" if data["speedup_vs_baseline"] else "-",
            "peak memory": f"{row.peak_memory / 2**20:.0f} MiB",
        }
        table.add_row(*(cells[column] for column in columns))
    console.print(table)
    if any(row.to_dict()["noisy"] for row in report.rows):
        console.print(
            f"[yellow]±[/]: runs spread by more than {SPREAD_WARNING:.0%} of the median; the machine was busy"
        )
    for line in report.skipped:
        console.print(f"[yellow]skipped:[/] {escape(line)}")
    write_outputs(report, json_path=json_out, plot_path=plot, history=history)
    for path in (json_out, plot, history):
        if path is not None:
            console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command()(bench)
