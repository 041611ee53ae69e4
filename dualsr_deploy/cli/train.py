"""``dualsr train``: options onto :func:`dualsr_deploy.train.train`, with a Rich progress display."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from dualsr_deploy.cli.common import DEVICE_HELP, RESUME_HELP, console, user_errors

if TYPE_CHECKING:
    from dualsr_deploy.train import TrainEvent, TrainResult

# CLI option name → TrainConfig field, for the options a resumed run may or may not override.
_CONFIG_OPTIONS = {
    "scale": "scale",
    "n_feats": "n_feats",
    "n_blocks": "n_blocks",
    "neighbours": "neighbour_rule",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "learning_rate",
    "lr_step": "lr_step_epochs",
    "seed": "seed",
    "precision": "precision",
    "schedule": "schedule",
    "max_steps": "max_steps",
    "time_limit": "time_limit_s",
    "checkpoint_every": "checkpoint_every_s",
    "validate_every": "validate_every_steps",
    "batch_norm": "batch_norm",
    "ema": "ema",
}


def _given(ctx: typer.Context) -> frozenset[str]:
    return frozenset(
        field
        for option, field in _CONFIG_OPTIONS.items()
        if (source := ctx.get_parameter_source(option)) is not None and source.name != "DEFAULT"
    )


def _describe(event: TrainEvent) -> str:
    text = f"epoch {min(event.epoch + 1, event.epochs)}/{event.epochs}"
    if event.loss is not None:
        text += f"  L1 {event.loss:.4f}  lr {event.learning_rate:.2e}"
    return text


@user_errors
def train(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="A patch store (dualsr data prepare) or HR scenes (folder, glob, …)."),
    out: Path = typer.Option(
        ...,
        help="Run folder: checkpoints, logs, and the patch store when built here.",
        rich_help_panel="Output and resuming",
    ),
    scale: int | None = typer.Option(
        None, help="2, 3, 4 or 8; default: the patch store's scale.", rich_help_panel="Model"
    ),
    n_feats: int = typer.Option(64, help="Feature channels (the paper: 64).", rich_help_panel="Model"),
    n_blocks: int = typer.Option(2, help="ResBlocks per residual body (the paper: 2).", rich_help_panel="Model"),
    neighbours: str = typer.Option(
        "paper", help="Neighbour rule recorded with the model: paper or reference.", rich_help_panel="Model"
    ),
    epochs: int = typer.Option(100, help="Epochs in all (a resumed run may raise it).", rich_help_panel="Schedule"),
    batch_size: int = typer.Option(
        64, help="Global batch size (split over torchrun processes).", rich_help_panel="Schedule"
    ),
    lr: float = typer.Option(1e-4, help="Adam learning rate (β = 0.9, 0.999).", rich_help_panel="Schedule"),
    lr_step: int = typer.Option(30, help="Halve the learning rate every this many epochs.", rich_help_panel="Schedule"),
    seed: int = typer.Option(0, help="Seed of the initialisation and of the batch order.", rich_help_panel="Schedule"),
    precision: str = typer.Option(
        "auto",
        help="auto (bf16 on CUDA and on CPUs with native bf16, else fp32), fp32, bf16 or fp16.",
        rich_help_panel="Backend and precision",
    ),
    schedule: str = typer.Option(
        "band",
        help="band: the paper's band-by-band updates; parallel: all bands at once, one update per batch.",
        rich_help_panel="Schedule",
    ),
    batch_norm: str = typer.Option(
        "train",
        help="train: the paper's BatchNorm (batch statistics, running averages updated); frozen: keep and use the "
        "starting weights' running statistics (fine-tuning on other data with --init).",
        rich_help_panel="Schedule",
    ),
    ema: float = typer.Option(
        0.0,
        help="Keep, validate and write a moving average of the weights with this decay (e.g. 0.995); 0: off.",
        rich_help_panel="Schedule",
    ),
    max_steps: int | None = typer.Option(
        None, help="Stop after this many steps (batches) in all; resumable.", rich_help_panel="Schedule"
    ),
    time_limit: float | None = typer.Option(
        None, help="Stop after this many minutes; resumable.", rich_help_panel="Schedule"
    ),
    checkpoint_every: float = typer.Option(
        10.0, help="Minutes between resume files within an epoch.", rich_help_panel="Output and resuming"
    ),
    validate_every: int | None = typer.Option(
        None, help="Also validate every this many steps (long epochs).", rich_help_panel="Schedule"
    ),
    resume: bool = typer.Option(
        False, "--resume", help=RESUME_HELP + " Reads --out's last.pt.", rich_help_panel="Output and resuming"
    ),
    resume_from: Path | None = typer.Option(
        None,
        help="Continue from this resume file (a last.pt) exactly where it stopped; --resume takes --out's.",
        rich_help_panel="Output and resuming",
    ),
    init: Path | None = typer.Option(
        None,
        help="Start from these weights instead of a random initialisation (a smaller model of the same scale is "
        "grown into the run's size, computing the same).",
        rich_help_panel="Model",
    ),
    device: str | None = typer.Option(None, help=DEVICE_HELP, rich_help_panel="Backend and precision"),
    workers: int | None = typer.Option(
        None, help="Data-loading processes (default: 0 on CPU, 4 on CUDA).", rich_help_panel="Backend and precision"
    ),
    lr_patch: int = typer.Option(
        32, help="When SOURCE is scenes: LR patch side of the store built from them.", rich_help_panel="Data"
    ),
    validation: list[str] = typer.Option(
        [], help="When SOURCE is scenes: a scene to hold out (repeatable).", rich_help_panel="Data"
    ),
    validation_count: int = typer.Option(
        2, help="When SOURCE is scenes: how many to hold out (chosen by --seed).", rich_help_panel="Data"
    ),
) -> None:
    """Train CoarSR by the published recipe; Ctrl-C stops at the next batch and leaves a resume file."""
    from dualsr_deploy.data.patches import PatchRecipe, read_store_info
    from dualsr_deploy.train import TrainConfig, resolve_store
    from dualsr_deploy.train import train as run_training
    from dualsr_deploy.train.source import is_patch_store

    # Under torchrun only rank 0 talks (the library also writes only from rank 0).
    quiet = int(os.environ.get("RANK", "0")) != 0
    recipe = None
    if not is_patch_store(source) and scale is not None:
        recipe = PatchRecipe(
            scale=scale, lr_patch=lr_patch, validation=tuple(validation), validation_count=validation_count, seed=seed
        )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console, disable=quiet
    ) as bar:
        task = bar.add_task("prepare", total=None)

        def prepared(name: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"prepare {escape(name)}")

        store = resolve_store(source, out, recipe, progress=prepared)
        bar.remove_task(task)

    given = _given(ctx)
    resume_file = resume_from if resume_from is not None else (out / "last.pt" if resume else None)
    config = None
    if resume_file is None or given:
        config = TrainConfig(
            scale=scale if scale is not None else read_store_info(store).scale,
            n_feats=n_feats,
            n_blocks=n_blocks,
            neighbour_rule=neighbours,  # type: ignore[arg-type]  # checked by TrainConfig
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            lr_step_epochs=lr_step,
            seed=seed,
            precision=precision,  # type: ignore[arg-type]  # checked by TrainConfig
            schedule=schedule,  # type: ignore[arg-type]  # checked by TrainConfig
            batch_norm=batch_norm,  # type: ignore[arg-type]  # checked by TrainConfig
            ema=ema,
            max_steps=max_steps,
            time_limit_s=time_limit * 60 if time_limit is not None else None,
            checkpoint_every_s=checkpoint_every * 60,
            validate_every_steps=validate_every,
        )
    with _training_bar(quiet) as (bar, report):
        result = run_training(
            store,
            out,
            config,
            resume=resume_file,
            given=given,
            init=init,
            device=device,
            workers=workers,
            progress=report,
        )
    if result.main:
        _summary(result, source, out)


@contextlib.contextmanager
def _training_bar(quiet: bool) -> Iterator[tuple[Progress, Callable[[TrainEvent], None]]]:
    """A bar over the run's steps, and the callback that drives it (validation rounds are printed above it)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=quiet) as bar:
        task = bar.add_task("train", total=None)

        def report(event: TrainEvent) -> None:
            if event.kind in ("start", "step"):
                bar.update(task, completed=event.step, total=event.total_steps, description=_describe(event))
            elif event.kind == "validation":
                m = event.metrics
                bar.console.print(
                    f"step {event.step}, epoch {event.epoch}: PSNR {m['psnr']:.3f} dB "
                    f"(bicubic {m['bicubic_psnr']:.3f}, {m['gain_psnr']:+.3f}), "
                    f"SSIM {m['ssim']:.4f} ({m['bicubic_ssim']:.4f}), "
                    f"SAM {m['sam']:.3f}° ({m['bicubic_sam']:.3f}°)"
                )

        yield bar, report


def _summary(result: TrainResult, source: Path, out: Path) -> None:
    if result.stop_reason == "finished":
        console.print(f"finished {result.epochs_done} epochs, {result.steps} steps in {result.seconds / 60:.1f} min")
    else:
        console.print(
            f"[yellow]stopped ({result.stop_reason})[/] at step {result.steps}, epoch {result.epochs_done + 1}; "
            f"continue with: dualsr train {escape(str(source))} --out {escape(str(out))} --resume"
            + ("" if result.resume_file == out / "last.pt" else f"-from {escape(str(result.resume_file))}")
        )
    if result.best_weights is not None:
        console.print(f"best weights: {result.best_weights} (validation PSNR {result.best['psnr']:.3f} dB)")
    console.print(f"last weights: {result.last_weights}; logs: {out / 'log.jsonl'}, {out / 'validation.csv'}")


@user_errors
def card(
    weights: Path = typer.Argument(..., help="Trained weights (.safetensors with provenance, or any checkpoint)."),
    store: Path = typer.Option(..., help="The patch store whose held-out scenes the weights are scored on."),
    out: Path | None = typer.Option(None, help="Write the Markdown card here (default: print it)."),
    device: str | None = typer.Option(None, help=DEVICE_HELP),
    half: Path | None = typer.Option(
        None, help="×s/2 weights: also score DualSR (the dual stage, its fine result) on the held-out scenes."
    ),
    precision: list[str] = typer.Option(
        [],
        help="Measure the quality rule for this reduced precision (bf16, fp16; repeat for more) against fp32 on the "
        "held-out scenes, add it to the card and keep it beside the weights (WEIGHTS.fidelity.json), where "
        "--precision auto reads it. fp32: each backend's fp32 against torch's, and its time, for --backend auto.",
    ),
    backend: list[str] = typer.Option(
        [],
        help="Backends to measure --precision on (repeat; default torch); graphs are exported to a scratch folder.",
    ),
    tile: int | None = typer.Option(None, help="LR tile side for the --precision runs (default: infer's)."),
    record: Path | None = typer.Option(
        None, help="Where to keep the --precision records (default: beside the weights, WEIGHTS.fidelity.json)."
    ),
) -> None:
    """Score weights on a store's held-out scenes against bicubic and write their model card; with --precision,
    also measure each reduced precision against fp32 (the quality rule) and record it for --precision auto."""
    from dualsr_deploy.atomic import atomic_output
    from dualsr_deploy.runtimes import default_device
    from dualsr_deploy.train.card import model_card, validate_weights

    where = device or default_device()
    with console.status(f"validating {escape(str(weights))} on the held-out scenes of {escape(str(store))}"):
        info, validation, fine = validate_weights(weights, store, device=where, half=half)
    text = model_card(info, validation, fine=fine, half=half.name if half is not None else None)
    if precision:
        text += "\n" + _measure_precisions(weights, store, half, precision, backend or ["torch"], where, tile, record)
    if out is None:
        console.print(text, markup=False, highlight=False)
        return
    with atomic_output(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    summary = validation.summary()
    dual = ""
    if fine:
        mean = sum(scores["psnr"] for scores in fine.values()) / len(fine)
        dual = f", DualSR {mean:.3f} dB ({mean - summary['bicubic_psnr']:+.3f})"
    console.print(
        f"wrote {out}: PSNR {summary['psnr']:.3f} dB vs bicubic {summary['bicubic_psnr']:.3f} "
        f"({summary['gain_psnr']:+.3f}){dual} on {len(validation.scenes)} held-out scenes"
    )


def _measure_precisions(
    weights: Path,
    store: Path,
    half: Path | None,
    precisions: list[str],
    backends: list[str],
    device: str,
    tile: int | None,
    record: Path | None,
) -> str:
    """``card --precision``: measure, print the verdicts, merge the records beside the weights; the card's section."""
    from dualsr_deploy.backends.fidelity import FidelityFile, file_sha256, read_records, record_path, timing_words
    from dualsr_deploy.data.patches import PatchDataset
    from dualsr_deploy.evaluation.fidelity import fidelity_section, measure_fidelity, speed_words

    dataset = PatchDataset(Path(store), augmentation=False)
    try:
        scenes = list(dataset.validation())
    finally:
        dataset.close()
    with console.status("measuring the quality rule") as status:
        records = measure_fidelity(
            weights,
            scenes,
            precisions=precisions,
            backends=backends,
            device=device,
            half=half,
            tile=tile,
            say=lambda line: (
                console.print(escape(line))
                if "skipped" in line
                else status.update(f"measuring the quality rule: {escape(line)}")
            ),
        )
    for found in records:
        drop, rise = found.worst()
        verdict = "[green]passes[/]" if found.passes() else "[red]fails[/]"
        console.print(
            f"{found.backend} {found.precision} ({found.kind}): {verdict} the quality rule on {len(scenes)} held-out "
            f"scenes (worst {-drop:+.4f} dB, SAM {rise:+.4f}°), {speed_words(found, records)} on "
            f"{timing_words(found.timed_side)}"
        )
    target = record or record_path(weights)
    existing, _why = read_records(weights, target) if target.is_file() else (None, "")
    kept = (  # a copy: what read_records returns is shared with --precision auto in this process
        FidelityFile(existing.weights_name, existing.weights_sha256, list(existing.records))
        if existing is not None
        else FidelityFile(weights.name, file_sha256(weights))
    )
    kept.merge(records)
    try:
        kept.write(target)
    except OSError as exc:  # e.g. shipped weights in a read-only site-packages
        from dualsr_deploy.errors import InputError

        raise InputError(f"cannot keep the records in {target} ({exc.strerror}); give --record PATH") from exc
    console.print(f"kept in {escape(str(target))}")
    return fidelity_section(records, weights.name)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(card)
