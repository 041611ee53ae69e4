"""``dualsr infer``: the thin layer over :func:`dualsr_deploy.infer.run_archive` (progress, tables, exit code)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dualsr_deploy.cli.common import (
    AUTO_BACKEND_HELP,
    BACKEND_HELP,
    DEVICE_HELP,
    ENGINES_HELP,
    NORMALISE_HELP,
    PRECISION_HELP,
    RESUME_HELP,
    WEIGHTS_HALF_OPTION,
    WEIGHTS_OPTION,
    Column,
    console,
    load_config,
    parse_bytes,
    print_skipped,
    print_table,
    resolved_toml,
    shortened,
    user_errors,
)

if TYPE_CHECKING:
    from dualsr_deploy.infer import ArchiveReport, Event


@user_errors
def infer(
    ctx: typer.Context,
    source: str = typer.Argument(
        ...,
        help="LR scenes: a file, folder, glob pattern, list file or multi-scene HDF5; or the same in object storage or "
        "over HTTP(S) (s3://bucket/prefix/, https://host/list.txt …).",
    ),
    normalise: str = typer.Option("auto", help=NORMALISE_HELP, rich_help_panel="Input"),
    nodata: list[float] | None = typer.Option(
        None,
        help="A value marking invalid pixels, besides the file's declared no-data (repeat for several).",
        rich_help_panel="Input",
    ),
    product_masks: bool = typer.Option(
        False,
        help="Add the flags of a product's mask file to the no-data (EMIT: the L2A MASK granule beside it).",
        rich_help_panel="Input",
    ),
    bad_bands: str | None = typer.Option(
        None,
        help="Bands not to super-resolve, 0-based indices and/or wavelengths: 0-4,103-110,1340-1450nm.",
        rich_help_panel="Input",
    ),
    key: str | None = typer.Option(
        None, help="Array inside MATLAB/HDF5/NPZ files (default: the largest 3-D one).", rich_help_panel="Input"
    ),
    layout: str | None = typer.Option(
        None, help="Axis order of that array (MATLAB order for .mat).", rich_help_panel="Input"
    ),
    root: Path | None = typer.Option(None, help="Allow scenes anywhere under this folder.", rich_help_panel="Input"),
    scale: int = typer.Option(4, help="Super-resolution factor (2, 3, 4, 8).", rich_help_panel="Model and weights"),
    stage: str = typer.Option(
        "auto",
        help="auto (dual where a ×s/2 model exists, else backproject; said and recorded), dual (CoarSR + "
        "back-projection onto the ×s/2 result, the paper), coarse (CoarSR only), or backproject (CoarSR + "
        "back-projection onto the LR input).",
        rich_help_panel="Model and weights",
    ),
    weights: str | None = WEIGHTS_OPTION,
    weights_half: str | None = WEIGHTS_HALF_OPTION,
    backend: str = typer.Option(
        "auto",
        "--backend",
        "--engine",
        help="auto (default): " + AUTO_BACKEND_HELP + " " + BACKEND_HELP,
        rich_help_panel="Backend and precision",
    ),
    device: str | None = typer.Option(
        None,
        help=DEVICE_HELP,
        rich_help_panel="Backend and precision",
    ),
    precision: str = typer.Option("auto", help=PRECISION_HELP, rich_help_panel="Backend and precision"),
    engines: Path = typer.Option(
        Path("engines"),
        help=ENGINES_HELP,
        rich_help_panel="Backend and precision",
    ),
    compile_model: bool = typer.Option(
        False, "--compile", help="torch.compile the torch backend.", rich_help_panel="Backend and precision"
    ),
    threads: int | None = typer.Option(
        None,
        help="Intra-op threads on a CPU. Default: the CPUs this process may use (affinity, cgroup quota); idle threads "
        "sleep rather than spin, so a shared machine does not stall them. Ray workers: one per CPU given.",
        rich_help_panel="Backend and precision",
    ),
    tile: int | None = typer.Option(
        None,
        help="LR tile size (cores; each runs with a halo ≥ the receptive field). Default: 128, or the largest a "
        "TensorRT plan's profile takes.",
        rich_help_panel="Tiling and memory",
    ),
    batch: int | None = typer.Option(
        None,
        help="Tiles per backend call (capped by a TensorRT plan's profile). Default: 1 on a CPU, 8 on a GPU; every "
        "call gets the same number, so results never depend on grouping.",
        rich_help_panel="Tiling and memory",
    ),
    memory_budget: str | None = typer.Option(
        None,
        help="Bytes a scene may take whole (e.g. 8G); larger scenes are streamed. Default: RAM/4.",
        rich_help_panel="Tiling and memory",
    ),
    out: str = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output folder (one file per scene, plus manifest.jsonl), or a prefix in object storage (s3://, gs://, "
        "az://): each scene uploaded once written, then recorded.",
        rich_help_panel="Output",
    ),
    output_format: str | None = typer.Option(
        None,
        "--format",
        help="h5, npy, mat, tif, cog, envi, nc (EMIT/AVIRIS-3 inputs) or zarr (default: the input's format; CAVE "
        "folders → h5).",
        rich_help_panel="Output",
    ),
    clip: bool = typer.Option(True, help="Clip the result to [0, 1].", rich_help_panel="Output"),
    qa: bool = typer.Option(
        False,
        help="Write a quality layer beside each output: 0 no-data, 1 computed from filled input, 2 clean.",
        rich_help_panel="Output",
    ),
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="bicubic: write the MATLAB-bicubic interpolation of each input beside its output (<name>_bicubic), in "
        "the same format and units, to compare the two in QGIS or xarray.",
        rich_help_panel="Output",
    ),
    zarr_format: int | None = typer.Option(
        None,
        "--zarr-format",
        help="Zarr outputs in format 2 (for readers with zarr-python 2) or 3 (default, where zarr-python ≥ 3).",
        rich_help_panel="Output",
    ),
    stac: bool = typer.Option(
        False,
        "--stac",
        help="Write a STAC Item beside each output (<name>.item.json: assets, bands, grid, processing, derived_from) "
        "and a catalog.json of the run.",
        rich_help_panel="Output",
    ),
    units: str = typer.Option(
        "source",
        help="source (the input's units and dtype, no-data and bad bands kept) or normalised (float32 in [0, 1]).",
        rich_help_panel="Output",
    ),
    resume: bool = typer.Option(
        False, help=RESUME_HELP + " Scenes done with unchanged inputs are skipped.", rich_help_panel="Run control"
    ),
    overwrite: bool = typer.Option(
        False, help="Redo every scene of an earlier run in --out.", rich_help_panel="Run control"
    ),
    dry_run: bool = typer.Option(
        False,
        help="List what would be done, and print the resolved configuration as TOML (for --config); do nothing.",
        rich_help_panel="Run control",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help='A TOML file of these options by their long names (scale = 2, memory-budget = "2G"); the command line '
        "overrides it.",
        is_eager=True,
        callback=load_config,
        rich_help_panel="Run control",
    ),
    cluster: str | None = typer.Option(
        None,
        help="Run on Ray: auto (the cluster this machine is part of), ray://HOST:PORT, or local[:N] (N workers "
        "here). One worker per GPU, or per --worker-cores CPU cores; needs dualsr-deploy\\[cluster]. Paths must be "
        "on storage every node mounts; with the archive and -o in object storage, workers use the bucket instead.",
        rich_help_panel="Cluster",
    ),
    worker_cores: int | None = typer.Option(
        None,
        help="CPU cores per cluster worker on CPU (default: local:N splits this machine's; else 4).",
        rich_help_panel="Cluster",
    ),
    retries: int = typer.Option(
        2, help="Times a scene is given out again after the cluster worker holding it died.", rich_help_panel="Cluster"
    ),
    shard: str | None = typer.Option(
        None,
        help="Run one part of the archive: I/N (1-based), or auto (the array index and count Slurm, AWS Batch or a "
        "Kubernetes Indexed Job set; auto/N where the scheduler gives no count). A scene's part follows from its "
        "name alone; each part keeps its own manifest.shard-I-of-N.jsonl (join them: dualsr manifest merge).",
        rich_help_panel="Cluster",
    ),
) -> None:
    """Super-resolve every scene of an archive: tiles, any backend, the fine stage, a manifest; resumable."""
    from dualsr_deploy.data.normalise import Normalisation
    from dualsr_deploy.data.validity import BadBandSpec, Masking
    from dualsr_deploy.infer import BackendSpec, InferOptions, run_archive
    from dualsr_deploy.infer.executors.ray_spec import ClusterSpec, require_ray
    from dualsr_deploy.infer.shards import parse_shard

    cluster_spec = None
    if cluster is not None:
        cluster_spec = ClusterSpec.parse(cluster, worker_cores=worker_cores, retries=retries, device=device)
        if not dry_run:
            require_ray()
    spec = BackendSpec.for_run(
        backend,
        scale=scale,
        stage=stage,
        device=device,
        precision=precision,
        artefacts_dir=engines,
        weights=weights,
        weights_half=weights_half,
        compile=compile_model,
        on_cluster=cluster is not None,
        threads=threads,
    )
    options = InferOptions(
        scale=scale,
        stage=stage,
        backend=spec,
        tile=tile,
        batch=batch,
        format=output_format,
        clip=clip,
        resume=resume,
        overwrite=overwrite,
        memory_budget=parse_bytes(memory_budget) if memory_budget else None,
        normalise=Normalisation.parse(normalise),
        masking=Masking(tuple(nodata or ()), BadBandSpec.parse(bad_bands) if bad_bands else None, product_masks),
        units=units,
        qa=qa,
        reference=reference,
        zarr_format=zarr_format,
        key=key,
        layout=layout,
        root=root,
        shard=parse_shard(shard) if shard is not None else None,
        stac=stac,
    )
    # what auto chose, said once the archive is planned (not before the error of a wrong path or a locked folder)
    said = (options.backend.backend_choice, options.backend.precision_choice) if not dry_run else ()
    choices = [text for text in (*said, options.stage_choice) if text]
    with InferProgress(disable=dry_run) as bar:

        def on_event(event: Event) -> None:
            if event.kind == "plan":
                for text in choices:
                    console.print(escape(text), highlight=False)
                choices.clear()
            bar.on_event(event)

        report = run_archive(source, out, options, progress=on_event, dry_run=dry_run, cluster=cluster_spec)
    if dry_run:
        _plan_table(report, f"dry run: {escape(str(source))} → {escape(str(out))}")
        print_skipped(report.not_scenes, report.root or Path("."))
        given = {name: value for name, value in ctx.params.items() if name not in ("config", "dry_run", "source")}
        resolved = {
            **given,
            "stage": options.stage,  # what auto chose, so that the file runs the same job again
            # auto where each weights family chooses its own (--weights auto): one value would hold every family to
            # the first's, and auto chooses again as this run does
            "backend": "auto" if spec.backend_auto and spec.family == "auto" else spec.backend,
            "precision": "auto" if spec.precision_choice and spec.family == "auto" else spec.precision,
            "device": spec.device,
            "threads": spec.cpu_threads,
            "memory_budget": str(options.budget),
        }
        long_names = {
            param.name: next(o for o in param.opts if o.startswith("--")).lstrip("-")
            for param in ctx.command.params
            if param.name in resolved and any(o.startswith("--") for o in param.opts)
        }
        console.print("resolved configuration (dualsr infer SOURCE --config FILE runs it again):")
        ordered = [param.name for param in ctx.command.params if param.name in long_names]  # the --help order
        print(resolved_toml({long_names[name]: resolved[name] for name in ordered}))
        return
    label = ", ".join(report.backends) if cluster_spec is not None and report.backends else spec.label
    where = f", Ray {cluster_spec.text}" if cluster_spec is not None else ""
    _summary(
        report,
        f"{escape(str(source))} → {escape(str(out))} (×{scale}, {options.stage}, {escape(label)}{where})",
        cluster_spec is not None,
    )
    raise typer.Exit(report.exit_code)


class InferProgress:
    """Two bars (scenes and tiles) driven by the run's events, and one for each step of a streamed scene's fine stage
    while it runs (rows done, rate, time left); failed and streamed scenes are printed above."""

    def __init__(self, *, disable: bool) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(bar_width=40 if console.width >= 120 else 12),  # the rate and time left fit 80 columns
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        # transient: the bars go when the run ends (the summary table says how every scene ended), rather than
        # staying frozen part-way for scenes that failed or were skipped
        self.bar = Progress(*columns, console=console, disable=disable, transient=True)
        self.scenes = self.tiles = TaskID(0)
        self.strips: dict[str, TaskID] = {}  # a streamed scene's fine-stage steps, each a bar while it runs

    def __enter__(self) -> InferProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def on_event(self, event: Event) -> None:
        bar = self.bar
        if event.kind == "plan":
            self.scenes = bar.add_task("scenes", total=event.count or None, rate="")
            self.tiles = bar.add_task("tiles", total=event.total or None, rate="")
        elif event.kind == "scene":
            bar.update(self.tiles, description=f"tiles of {escape(shortened(event.name))}")
        elif event.kind == "tiles":
            bar.advance(self.tiles, event.count)
            speed = next(t.speed for t in bar.tasks if t.id == self.tiles)
            if speed:
                bar.update(self.tiles, rate=f"{speed:.1f} tiles/s")
        elif event.kind == "done" and event.record is not None:
            record = event.record
            if record.status != "ok" or record.mode == "streamed":
                colour = "green" if record.status == "ok" else "red"
                detail = f": {escape(record.error)}" if record.error else " (streamed)"
                bar.console.print(f"[{colour}]{record.status}[/] {escape(record.name)}{detail}")
            if record.mode is not None:  # scenes that failed before running were never counted in
                bar.advance(self.scenes)
        elif event.kind == "strips":
            if event.name not in self.strips:
                scene, _, step = event.name.partition(": ")
                label = f"{escape(shortened(scene, 20))}: {step}"
                self.strips[event.name] = bar.add_task(label, total=event.total, rate="")
            task = self.strips[event.name]
            bar.update(task, completed=event.count)
            speed = next(t.speed for t in bar.tasks if t.id == task)
            if speed:
                bar.update(task, rate=f"{speed:.0f} rows/s")
            if event.count >= event.total:
                bar.remove_task(task)
                del self.strips[event.name]
        elif event.kind == "skip":
            bar.advance(self.scenes)
            bar.advance(self.tiles, event.count)
        elif event.kind == "message":
            bar.console.print(escape(event.text))


def _plan_table(report: ArchiveReport, title: str) -> None:
    columns = [
        Column("scene", text=True),
        Column("bands × h × w", "C×h×w", "right"),
        Column("action"),
        Column("mode", None),
        Column("weights"),
        Column("tiles", None, "right"),
        Column("output / reason", "output", text=True),
    ]
    rows = []
    for planned in report.plan:
        shape = "×".join(map(str, planned.entry.shape)) if planned.entry.shape else "-"
        where = str(planned.output) if planned.action == "run" and planned.output else (planned.reason or "")
        family = planned.weights.family if planned.weights is not None else "-"
        rows.append(
            [escape(planned.entry.name), shape, planned.action, planned.mode, family, str(planned.tiles), escape(where)]
        )
    print_table(title, columns, rows)


def _summary(report: ArchiveReport, title: str, on_cluster: bool) -> None:
    columns = [
        Column("scene", text=True),
        Column("status"),
        Column("output (bands × H × W)", "output", "right"),
        Column("mode", None),
        Column("weights"),
        *([Column("worker", None)] if on_cluster else []),
        Column("seconds", "s", "right"),
        Column("SAM weight", None, "right"),
        Column("back to LR (area)", None, "right"),
        Column("error or notes", note=True),
    ]
    rows = []
    for record in report.records:
        colour = "green" if record.status == "ok" else "red"
        status = "[yellow]suspect[/]" if record.status == "ok" and record.suspect else f"[{colour}]{record.status}[/]"
        rows.append(
            [
                escape(record.name),
                status,
                "×".join(map(str, record.shape_out)) if record.shape_out else "-",
                record.mode or "-",
                escape(record.weights or "-"),
                *([escape(record.worker or "-")] if on_cluster else []),
                f"{record.seconds.get('total', 0):.1f}",
                f"{record.sam_weight:.4f}" if record.sam_weight is not None else "-",
                _consistency(record.consistency),
                escape(record.error or "; ".join([*([record.suspect] if record.suspect else []), *record.notes])),
            ]
        )
    print_table(title, columns, rows)
    print_skipped(report.not_scenes, report.root or Path("."))
    done = len(report.ok)
    per_minute = 60 * done / report.seconds if report.seconds else 0.0
    manifest = escape(report.manifest_url or str(report.manifest or report.out_dir / "manifest.jsonl"))
    suspects = sum(1 for record in report.ok if record.suspect)
    console.print(
        f"{done} done{f' ({suspects} suspect: see their notes)' if suspects else ''}, {len(report.failed)} failed, "
        f"{len(report.skipped)} skipped (done before) in "
        f"{report.seconds:.1f} s ({per_minute:.1f} scenes/min); manifest: {manifest}"
    )
    if report.interrupted:
        console.print("[yellow]interrupted[/]: finished scenes are kept; continue with the same command and --resume")
    for why in report.broken:
        console.print(f"[red]run broken[/]: {escape(why)}; exit 1, finished scenes are kept (--resume continues)")


def _consistency(figures: dict[str, Any] | None) -> str:
    """``48.2 dB, 0.31°``: the output averaged back to the LR grid against its input (PSNR, mean spectral angle)."""
    if not figures:
        return "-"
    area = figures["area"]
    return f"{area['psnr_db']:.1f} dB, {area['sam_deg']:.2f}°"


def register(app: typer.Typer) -> None:
    app.command()(infer)
