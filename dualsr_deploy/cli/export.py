"""``dualsr export`` and ``dualsr backends``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from dualsr_deploy.cli.common import ENGINES_HELP, TENSORRT_MODES, console, user_errors


@user_errors
def export(
    recipe: Path | None = typer.Option(
        None, help="A recipe from export/*.toml; default: a recipe for --scale.", rich_help_panel="Model"
    ),
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        "--weights",
        help="cave, airborne (a shipped family) or a checkpoint PATH to export.",
        rich_help_panel="Model",
    ),
    scale: int | None = typer.Option(
        None, help="Scale of the default recipe (2, 3, 4, 8); checked against the model.", rich_help_panel="Model"
    ),
    bands: int | None = typer.Option(
        None, help="Band count the graph is fixed to (default 31).", rich_help_panel="Model"
    ),
    precision: list[str] | None = typer.Option(
        None, help="fp32 and/or fp16 (repeat the option); default both.", rich_help_panel="Artefacts"
    ),
    out: Path = typer.Option(
        Path("engines"), "--engines", help=ENGINES_HELP + " Written to ENGINES/<variant>/.", rich_help_panel="Artefacts"
    ),
    old_out: Path | None = typer.Option(None, "--out", hidden=True, help="The earlier name of --engines."),
    verify: bool = typer.Option(
        False, help="Run every available backend against torch float64; fail if off.", rich_help_panel="Checks"
    ),
    operators: Path | None = typer.Option(
        None,
        help="onnx-tensorrt operators.md: fail if a graph uses an operator TensorRT cannot parse.",
        rich_help_panel="Checks",
    ),
    tensorrt: str = typer.Option(
        "auto",
        help="TensorRT plans: auto (build when TensorRT and a GPU are here), require, or off.",
        rich_help_panel="Artefacts",
    ),
    simplify: bool = typer.Option(
        False, help="Simplify the graphs with onnxslim (pip install onnxslim).", rich_help_panel="Artefacts"
    ),
    openvino: bool = typer.Option(
        False,
        help="Also write OpenVINO IR (xml/bin) beside the fp32 graph (pip install 'dualsr-deploy[openvino]').",
        rich_help_panel="Artefacts",
    ),
) -> None:
    """Export CoarSR to ONNX (FP32/FP16), TensorRT plans and OpenVINO IR, with a manifest beside each artefact."""
    out = old_out if old_out is not None else out
    if recipe is None and scale is None:
        raise typer.BadParameter("give --recipe or --scale")
    if tensorrt not in TENSORRT_MODES:
        raise typer.BadParameter(f"--tensorrt must be one of {', '.join(TENSORRT_MODES)}; got {tensorrt!r}")
    from dualsr_deploy.export.build import TENSORRT_MODES as MODES
    from dualsr_deploy.export.build import export_variant
    from dualsr_deploy.export.recipes import default_recipe, load_recipe

    mode = next(m for m in MODES if m == tensorrt)  # typed as the pipeline's modes

    base = load_recipe(recipe) if recipe is not None else default_recipe(scale or 4, bands or 31)
    if recipe is not None and scale is not None and scale != base.scale:
        raise typer.BadParameter(f"--scale {scale} contradicts the recipe's scale {base.scale}")
    from dualsr_deploy.weights import resolve_weights

    chosen = base.with_overrides(
        checkpoint=resolve_weights(checkpoint, base.scale),
        bands=bands,
        precisions=tuple(precision) if precision else None,
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        phases: dict[str, TaskID] = {}

        def builder_step(phase: str, step: int, steps: int) -> None:  # called from TensorRT's builder threads
            if phase not in phases:
                phases[phase] = bar.add_task(f"TensorRT: {escape(phase)}", total=steps or None)
            bar.update(phases[phase], completed=step, total=steps or None)

        result = export_variant(
            chosen,
            out_dir=out,
            verify=verify,
            operator_table=operators,
            tensorrt=mode,
            simplify=simplify,
            openvino=openvino,
            progress=console.print,
            build_progress=builder_step,
        )
    table = Table(title=f"{chosen.name} (×{chosen.scale}, {chosen.bands} bands) from {result.checkpoint}")
    for column in ("artefact", "precision", "manifest"):
        table.add_column(column, overflow="fold")
    for artefact in result.artefacts:
        table.add_row(str(artefact.path), artefact.precision, artefact.manifest.name)
    console.print(table)
    if result.verification:
        check = Table(title="verification against torch float64")
        for column in ("backend", "max |Δ|", "mean |Δ|", "tolerance (max / mean)", "result"):
            check.add_column(column)
        for row in result.verification:
            check.add_row(
                row.backend,
                f"{row.max_abs:.2e}",
                f"{row.mean_abs:.2e}",
                f"{row.tolerance.max_abs:.0e} / {row.tolerance.mean_abs:.0e}",
                "[green]pass[/]" if row.passed else "[red]FAIL[/]",
            )
        console.print(check)
    for line in result.skipped:
        console.print(f"[yellow]skipped:[/] {escape(line)}")


def backends() -> None:
    """List the backends this machine can run, and why the others cannot."""
    from dualsr_deploy.backends.status import backend_statuses

    table = Table(title="backends")
    for column in ("backend", "available", "detail"):
        table.add_column(column)
    for row in backend_statuses():
        table.add_row(row.name, "[green]yes[/]" if row.available else "[red]no[/]", escape(row.detail))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command()(backends)
