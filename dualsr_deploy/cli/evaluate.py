"""``dualsr eval`` and ``dualsr demo``: thin layers over :mod:`dualsr_deploy.evaluation`."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dualsr_deploy.cli.common import (
    DEVICE_HELP,
    ENGINES_HELP,
    PRECISION_HELP,
    WEIGHTS_HALF_OPTION,
    WEIGHTS_OPTION,
    console,
    user_errors,
)
from dualsr_deploy.errors import InputError


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


def _summary(report: object, paths: dict[str, Path]) -> None:
    from dualsr_deploy.evaluation.core import EvalReport

    assert isinstance(report, EvalReport)
    table = Table(
        title=f"×{report.scale}, mean over {len(report.scenes)} scene{'' if len(report.scenes) == 1 else 's'} "
        f"({report.protocol})",
        title_justify="left",
    )
    for column in ("method", "PSNR (dB)", "SSIM", "SAM (°)", "ERGAS"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method in report.methods:
        mean = report.mean(method)
        if mean:
            table.add_row(
                escape(method),
                f"{mean['psnr']:.3f}",
                f"{mean['ssim']:.4f}",
                f"{mean['sam']:.3f}",
                f"{mean['ergas']:.3f}",
            )
    if report.mixed:
        for method in report.methods:
            held = report.mean(method, held_out_only=True)
            table.add_row(
                escape(f"{method}, not seen in training"),
                f"{held['psnr']:.3f}",
                f"{held['ssim']:.4f}",
                f"{held['sam']:.3f}",
                f"{held['ergas']:.3f}",
            )
    for name, row in report.paper_rows.items():
        table.add_row(
            f"[dim]paper, CAVE: {name} (reference)[/]",
            f"[dim]{row['psnr']:.3f}[/]",
            f"[dim]{row['ssim']:.4f}[/]",
            f"[dim]{row['sam']:.3f}[/]",
            "",
        )
    console.print(table)
    from dualsr_deploy.evaluation.reports import gains

    if gains(report):
        console.print(escape(gains(report)), highlight=False)
    for name, error in report.failed:
        console.print(f"[red]failed[/] {escape(name)}: {escape(error)}", soft_wrap=True)
    console.print("report: " + ", ".join(escape(str(p)) for p in paths.values()))


def _pixels(values: list[str] | None) -> tuple[tuple[int, int], ...] | None:
    if not values:
        return None
    out = []
    for value in values:
        try:
            row, col = (int(v) for v in value.split(","))
        except ValueError:
            raise InputError(f"--pixel takes ROW,COL (e.g. 120,64); got {value!r}") from None
        out.append((row, col))
    return tuple(out)


@user_errors
def eval_command(
    hr: str | None = typer.Argument(
        None,
        help="HR scenes (ground truth): a file, folder, glob, list file or multi-scene HDF5. Without it, --lr and "
        "--sr: each output scored against its own input (no ground truth needed).",
    ),
    out: Path = typer.Option(
        Path("report"), "--out", "-o", help="Folder for report.{json,csv,md,html}.", rich_help_panel="Report"
    ),
    scale: int = typer.Option(4, help="Super-resolution factor.", rich_help_panel="Model and weights"),
    stage: str = typer.Option(
        "auto", help="auto, dual, coarse or backproject (see dualsr infer).", rich_help_panel="Model and weights"
    ),
    backend: list[str] | None = typer.Option(
        None,
        "--backend",
        "--engine",
        help="torch, onnx, trt or openvino; repeat to compare backends side by side.",
        rich_help_panel="Backend and precision",
    ),
    device: str | None = typer.Option(None, help=DEVICE_HELP, rich_help_panel="Backend and precision"),
    precision: list[str] | None = typer.Option(
        None,
        help="One per --backend (default auto for each). " + PRECISION_HELP,
        rich_help_panel="Backend and precision",
    ),
    weights: str | None = WEIGHTS_OPTION,
    weights_half: str | None = WEIGHTS_HALF_OPTION,
    engines_dir: Path = typer.Option(
        Path("engines"), "--engines", help=ENGINES_HELP, rich_help_panel="Backend and precision"
    ),
    lr: Path | None = typer.Option(
        None, help="Folder of LR scenes paired by name (instead of simulating LR).", rich_help_panel="Input"
    ),
    sr: list[Path] | None = typer.Option(
        None,
        help="Folder of existing SR outputs paired by name (e.g. a dualsr infer -o); without HR, repeat it to compare "
        "folders (the coarse stage's and the fine stage's, say).",
        rich_help_panel="Input",
    ),
    blur: str | None = typer.Option(
        None, help="Gaussian blur before downsampling, SIZE:SIGMA (e.g. 7:1.5).", rich_help_panel="Input"
    ),
    noise: float = typer.Option(0.0, help="Gaussian noise σ on the LR ([0, 1] scale).", rich_help_panel="Input"),
    band: list[int] | None = typer.Option(
        None, help="Band index for the error maps (repeat; default: 3 spread).", rich_help_panel="Report"
    ),
    pixel: list[str] | None = typer.Option(
        None, help="ROW,COL for the spectra figure (repeat; default: picked).", rich_help_panel="Report"
    ),
    figures: bool = typer.Option(
        True, help="Draw the figures of the HTML report (matplotlib).", rich_help_panel="Report"
    ),
    tile: int | None = typer.Option(
        None, help="LR tile size (default: as dualsr infer chooses).", rich_help_panel="Backend and precision"
    ),
    clean_only: bool = typer.Option(
        False,
        help="Score only pixels computed from valid input alone (scenes with no-data; see dualsr infer --qa).",
        rich_help_panel="Input",
    ),
) -> None:
    """Score bicubic, the coarse and the fine stage on HR scenes, or without HR how faithful existing outputs are to
    their inputs (--lr and --sr only); write JSON, CSV, Markdown and HTML reports."""
    from dualsr_deploy.data.degrade import Blur
    from dualsr_deploy.evaluation import EvalOptions, evaluate_archive, write_reports
    from dualsr_deploy.infer import BackendSpec

    if hr is None:
        _without_hr(lr, sr or [], scale, out, figures)
        return
    if sr is not None and len(sr) > 1:
        raise InputError("with HR scenes, give one --sr folder (without HR, repeat it to compare folders)")

    backends = backend or ["torch"]
    precisions = precision or ["auto"] * len(backends)
    if len(precisions) != len(backends):
        raise InputError(f"give one --precision per --backend ({len(backends)}), or none")
    specs = tuple(
        BackendSpec.for_run(
            name,
            scale=scale,
            stage=stage,
            device=device,
            precision=chosen,
            artefacts_dir=engines_dir,
            weights=weights,
            weights_half=weights_half,
        )
        for name, chosen in zip(backends, precisions, strict=True)
    )
    for spec in specs:
        if spec.precision_choice:
            console.print(f"{spec.backend}: {spec.precision_choice}")
    options = EvalOptions(
        scale=scale,
        backends=specs,
        stage=stage,
        blur=Blur.parse(blur) if blur else None,
        noise_sigma=noise,
        tile=tile,
        lr=lr,
        sr=sr[0] if sr else None,
        bands_shown=tuple(band) if band else None,
        pixels=_pixels(pixel),
        figures=figures,
        clean_only=clean_only,
    )
    if options.stage_choice:
        console.print(options.stage_choice)
    with _progress() as bar:
        task = bar.add_task("scenes", total=None)

        def report_progress(name: str, done: int, total: int) -> None:
            bar.update(task, description=escape(name), completed=done, total=total)

        report = evaluate_archive(hr, options, progress=report_progress)
        paths = write_reports(report, out, options, progress=lambda n, d, t: report_progress(f"figures: {n}", d, t))
    _summary(report, paths)
    if report.failed:
        raise typer.Exit(1)


def _without_hr(lr: Path | None, sr: list[Path], scale: int, out: Path, figures: bool) -> None:
    """``dualsr eval --lr LR --sr SR [--sr SR2]``: each output against its own input, beside bicubic."""
    from dualsr_deploy.evaluation.without_hr import evaluate_without_hr
    from dualsr_deploy.evaluation.without_hr_reports import write_consistency_reports

    if lr is None or not sr:
        raise InputError(
            "give HR scenes to score against ground truth, or --lr LR and --sr SR to score outputs against their "
            "own inputs (no HR needed)"
        )
    with _progress() as bar:
        task = bar.add_task("scenes", total=None)

        def report_progress(name: str, done: int, total: int) -> None:
            bar.update(task, description=escape(name), completed=done, total=total)

        report = evaluate_without_hr(lr, sr, scale=scale, maps=figures, progress=report_progress)
        paths = write_consistency_reports(report, out, figures=figures)
    table = Table(title=f"consistency without ground truth, ×{scale} (area: block mean back to the LR grid)")
    for column in (
        "scene",
        "method",
        "area PSNR (dB)",
        "area SAM (°)",
        "bicubic PSNR (dB)",
        "shift (LR px)",
        "suspect",
    ):
        table.add_column(column, justify="left" if column in ("scene", "method", "suspect") else "right")
    for scene in report.scenes:
        for method, f in scene.figures.items():
            dy, dx = f["shift_lr_pixels"]
            table.add_row(
                escape(scene.name),
                escape(method),
                f"{f['area']['psnr_db']:.2f}",
                f"{f['area']['sam_deg']:.3f}",
                f"{f['bicubic']['psnr_db']:.2f}",
                f"{dy:+.2f}, {dx:+.2f}",
                "[yellow]yes[/]" if f.get("suspect") else "",
            )
    console.print(table)
    for name, method, reason in report.suspects:
        console.print(f"[yellow]suspect[/] {escape(name)} ({escape(method)}): {escape(reason)}", soft_wrap=True)
    for name, error in report.failed:
        console.print(f"[red]failed[/] {escape(name)}: {escape(error)}", soft_wrap=True)
    console.print("report: " + ", ".join(escape(str(p)) for p in paths.values()))
    if report.failed:
        raise typer.Exit(1)


@user_errors
def demo(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="Folder for the example scenes and the report."),
    synthetic: int = typer.Option(
        0,
        "--synthetic",
        "--scenes",
        help="Also make this many synthetic CAVE-like scenes (on them bicubic keeps a lower SAM: see the README).",
    ),
    size: int = typer.Option(256, help="The synthetic scenes' size in pixels (HR)."),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    weights: str | None = typer.Option(None, help="auto (the default: a family per scene), cave, airborne or PATH."),
) -> None:
    """The built-in example: a real AVIRIS scene shipped with the package (and synthetic ones on request), DualSR
    ×4 with the weights auto picks, against bicubic, to a report."""
    from dualsr_deploy.evaluation.demo import best_backend, run_demo

    spec = best_backend(precision, weights)
    if spec.precision_choice:
        console.print(f"{spec.backend}: {spec.precision_choice}")
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("demo", total=None)

        def report_progress(name: str, done: int, total: int) -> None:
            bar.update(task, description=escape(name), completed=done, total=total)

        report, paths = run_demo(
            out, synthetic=synthetic, size=size, precision=precision, weights=weights, progress=report_progress
        )
    _summary(report, paths)
    for scene in report.scenes:
        if scene.weights:
            console.print(f"{escape(scene.name)}: weights {escape(scene.weights)}")
    console.print(
        f"done in {time.perf_counter() - started:.1f} s; open [bold]{escape(str(paths['html']))}[/] in a browser"
    )


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command()(demo)
