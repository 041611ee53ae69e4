"""``dualsr export`` and ``dualsr backends``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from dualsr_deploy.cli.common import ENGINES_HELP, TENSORRT_MODES, console, error_console, user_errors


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
    band_chunk: int | None = typer.Option(
        None,
        "--band-chunk",
        min=1,
        help="Write band-chunk graphs of this many bands (fp32, and IR with --openvino) instead of whole-cube graphs: "
        "what infer makes for ONNX Runtime and OpenVINO on a CPU (8 bands), a tenth of the memory at the same speed; "
        "one graph runs every band count from its chunk. "
        "No TensorRT plans are built from them.",
        rich_help_panel="Artefacts",
    ),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Write an INT8 graph (Q/DQ: per-channel int8 weights, uint8 activations) instead, into its variant folder "
        "where infer --precision int8 finds it, only if it passes the quality rule on --calibrate's held-out scenes in "
        "ONNX Runtime and OpenVINO; refused (exit 1) with the numbers otherwise.",
        rich_help_panel="INT8",
    ),
    calibrate: Path | None = typer.Option(
        None,
        "--calibrate",
        help="With --int8: a patch store (dualsr data prepare) whose training LR patches set the activation ranges "
        "and whose held-out scenes check the rule.",
        rich_help_panel="INT8",
    ),
    qat_steps: int = typer.Option(
        0,
        "--qat-steps",
        min=0,
        help="With --int8: first fine-tune a copy of the weights this many batches through the INT8 rounding, to "
        "match their fp32 output on the store's training patches (4.6 s a step of 16 patches on 2 cores); the rule "
        "still compares with the weights' fp32.",
        rich_help_panel="INT8",
    ),
) -> None:
    """Export CoarSR to ONNX (FP32/FP16), TensorRT plans and OpenVINO IR, with a manifest beside each artefact."""
    out = old_out if old_out is not None else out
    if recipe is None and scale is None:
        raise typer.BadParameter("give --recipe or --scale")
    if tensorrt not in TENSORRT_MODES:
        raise typer.BadParameter(f"--tensorrt must be one of {', '.join(TENSORRT_MODES)}; got {tensorrt!r}")
    from dualsr_deploy.artefacts import variant_name
    from dualsr_deploy.export.build import TENSORRT_MODES as MODES
    from dualsr_deploy.export.build import export_variant
    from dualsr_deploy.export.recipes import default_recipe, load_recipe

    mode = next(m for m in MODES if m == tensorrt)  # typed as the pipeline's modes
    if (calibrate is not None or qat_steps) and not int8:
        raise typer.BadParameter("--calibrate and --qat-steps go with --int8")
    if int8:
        given = {"--precision": bool(precision), "--verify": verify, "--simplify": simplify, "--openvino": openvino}
        given["--band-chunk"] = band_chunk is not None
        given["--tensorrt require"] = tensorrt == "require"
        clashing = [name for name, on in given.items() if on]
        if clashing:  # nothing asked for is silently dropped
            verb = "does" if len(clashing) == 1 else "do"
            raise typer.BadParameter(f"{', '.join(clashing)} {verb} not go with --int8 (it writes one INT8 graph)")
        _export_int8(checkpoint, recipe, scale, bands, calibrate, out, operators, qat_steps)
        return

    base = load_recipe(recipe) if recipe is not None else default_recipe(scale or 4, bands or 31)
    if recipe is not None and scale is not None and scale != base.scale:
        raise typer.BadParameter(f"--scale {scale} contradicts the recipe's scale {base.scale}")
    from dualsr_deploy.weights import resolve_weights

    skipped: list[str] = []
    if band_chunk is not None:
        if precision and set(precision) != {"fp32"}:
            raise typer.BadParameter("--band-chunk graphs are fp32 (OpenVINO's bf16 is a hint when it runs them)")
        if mode == "require":
            raise typer.BadParameter("--tensorrt require does not go with --band-chunk: plans need whole-cube graphs")
        if mode == "auto":
            skipped.append("TensorRT plans: they are built from whole-cube graphs, not from --band-chunk ones")
        mode, precision = "off", ["fp32"]
    chosen = base.with_overrides(
        checkpoint=resolve_weights(checkpoint, base.scale),
        bands=bands,
        precisions=tuple(precision) if precision else None,
    )
    if band_chunk is not None and band_chunk > chosen.bands:
        raise typer.BadParameter(f"--band-chunk {band_chunk} is more than the graph's {chosen.bands} bands (--bands)")
    if band_chunk is not None and band_chunk < chosen.bands:  # the graph a run of any count from the chunk opens
        console.print(
            f"a {band_chunk}-band chunk graph runs every band count from {band_chunk} ({chosen.bands} included): "
            f"writing it as the {band_chunk}-band graph, where infer looks for it"
        )
        renamed = variant_name(chosen.scale, band_chunk) if recipe is None else None  # a recipe's own name stays
        chosen = chosen.with_overrides(bands=band_chunk, name=renamed)
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
            band_chunk=band_chunk,
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
    for line in (*skipped, *result.skipped):
        console.print(f"[yellow]skipped:[/] {escape(line)}")


def _export_int8(
    checkpoint: str | None,
    recipe: Path | None,
    scale: int | None,
    bands: int | None,
    calibrate: Path | None,
    out: Path,
    operators: Path | None,
    qat_steps: int,
) -> None:
    from dualsr_deploy.backends.fidelity import RULE_TEXT
    from dualsr_deploy.export.int8 import export_int8
    from dualsr_deploy.export.recipes import default_recipe, load_recipe
    from dualsr_deploy.resources import usable_cpus
    from dualsr_deploy.weights import resolve_weights, shipped_weights

    if calibrate is None:
        raise typer.BadParameter("--int8 needs --calibrate STORE (a patch store made by dualsr data prepare)")
    base = load_recipe(recipe) if recipe is not None else default_recipe(scale or 4, bands or 31)
    if recipe is not None and scale is not None and scale != base.scale:
        raise typer.BadParameter(f"--scale {scale} contradicts the recipe's scale {base.scale}")
    weights = resolve_weights(checkpoint, base.scale) or base.checkpoint or shipped_weights(base.scale)
    done = export_int8(
        weights,
        calibrate,
        out,
        bands=bands or base.bands,
        operator_table=operators,
        threads=usable_cpus(),
        qat_steps=qat_steps,
        say=lambda line: console.print(escape(line), highlight=False),
    )
    table = Table(title=f"INT8 against fp32, per held-out scene ({RULE_TEXT})")
    for column in ("runtime", "scene", "PSNR fp32", "ΔPSNR (dB)", "SAM fp32", "ΔSAM (°)", "passes"):
        table.add_column(column)
    for record in done.check.records:
        for s in record.scenes:
            table.add_row(
                record.backend,
                escape(s.scene),
                f"{s.psnr_fp32:.3f}",
                f"{s.d_psnr:+.4f}",
                f"{s.sam_fp32:.3f}",
                f"{s.d_sam:+.4f}",
                "[green]yes[/]" if s.passes() else "[red]no[/]",
            )
    console.print(table)
    for record in done.check.records:
        console.print(
            f"{record.backend}: int8 {record.seconds:.2f} s against fp32 {record.seconds_fp32:.2f} s on these scenes "
            f"(one call each; {record.speedup:.2f}×)"
        )
    if done.graph is None:
        worst = max(done.check.records, key=lambda r: max(r.worst()))
        drop, rise = worst.worst()
        error_console.print(
            f"[bold red]refused:[/] the INT8 graph failed the quality rule (worst: {worst.backend} {-drop:+.4f} dB, "
            f"SAM {rise:+.4f}°); nothing was written",
            highlight=False,
        )
        raise typer.Exit(1)
    console.print(f"wrote {escape(str(done.graph))} and its quality records {escape(str(done.records))}")


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
