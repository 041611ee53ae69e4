"""``dualsr infer``: the thin layer over :func:`dualsr_deploy.infer.run_archive` (progress, tables, exit code)."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dualsr_deploy.cli.data import NORMALISE_HELP
from dualsr_deploy.cli.main import console, user_errors
from dualsr_deploy.errors import InputError


def parse_bytes(text: str) -> int:
    """``512M``, ``4G``, ``1.5GiB``, ``2000000`` → bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", text)
    if match is None:
        raise InputError(f"cannot read {text!r} as a size; write e.g. 512M or 4G")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


@user_errors
def infer(
    source: str = typer.Argument(..., help="LR scenes: a file, folder, glob pattern, list file or multi-scene HDF5."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (one file per scene, plus manifest.jsonl)."),
    scale: int = typer.Option(4, help="Super-resolution factor (2, 3, 4, 8)."),
    stage: str = typer.Option(
        "dual",
        help="dual (CoarSR + back-projection onto the ×s/2 result, the paper), coarse (CoarSR only), or "
        "backproject (CoarSR + back-projection onto the LR input, for scales without a ×s/2 model).",
    ),
    engine: str = typer.Option("torch", help="torch, onnx (ONNX Runtime) or trt (TensorRT plans; needs a GPU)."),
    device: str | None = typer.Option(None, help="cpu or cuda[:N] (default: cuda when there is one)."),
    precision: str = typer.Option("fp32", help="fp32, or fp16/bf16 on GPU (fp16 for exported engines)."),
    weights: Path | None = typer.Option(None, help="×scale checkpoint (default: the shipped weights)."),
    weights_half: Path | None = typer.Option(None, help="×scale/2 checkpoint for the dual stage (default: shipped)."),
    engines: Path = typer.Option(Path("engines"), help="Where exported engines are found (and exported to)."),
    tile: int | None = typer.Option(
        None,
        help="LR tile size (cores; each runs with a halo ≥ the receptive field). Default: 128, or the largest a "
        "TensorRT plan's profile takes.",
    ),
    batch: int = typer.Option(8, help="Tiles per engine call (capped by a TensorRT profile)."),
    output_format: str | None = typer.Option(
        None, "--format", help="h5, npy, mat, tif or envi (default: the input's format; CAVE folders → h5)."
    ),
    clip: bool = typer.Option(True, help="Clip the result to [0, 1]."),
    resume: bool = typer.Option(False, help="Continue a run in --out: skip scenes done with unchanged inputs."),
    overwrite: bool = typer.Option(False, help="Redo every scene of an earlier run in --out."),
    dry_run: bool = typer.Option(False, help="List what would be done, and do nothing."),
    memory_budget: str | None = typer.Option(
        None, help="Bytes a scene may take whole (e.g. 8G); larger scenes are streamed. Default: RAM/4."
    ),
    normalise: str = typer.Option("auto", help=NORMALISE_HELP),
    key: str | None = typer.Option(None, help="Array inside MATLAB/HDF5/NPZ files (default: the largest 3-D one)."),
    layout: str | None = typer.Option(None, help="Axis order of that array (MATLAB order for .mat)."),
    root: Path | None = typer.Option(None, help="Allow scenes anywhere under this folder."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the torch engine."),
    cluster: str | None = typer.Option(
        None,
        help="Run on Ray: auto (the cluster this machine is part of), ray://HOST:PORT, or local[:N] (N workers "
        "here). One worker per GPU, or per --worker-cores CPU cores; needs dualsr-deploy\\[cluster].",
    ),
    worker_cores: int | None = typer.Option(
        None, help="CPU cores per cluster worker on CPU (default: local:N splits this machine's; else 4)."
    ),
    retries: int = typer.Option(2, help="Times a scene is given out again after the cluster worker holding it died."),
) -> None:
    """Super-resolve every scene of an archive: tiles, any backend, the fine stage, a manifest; resumable."""
    from dualsr_deploy.data.normalise import Normalisation
    from dualsr_deploy.infer.engines import EngineSpec, check_device, default_device
    from dualsr_deploy.infer.run import InferOptions, run_archive

    chosen = {scale: weights} if weights is not None else {}
    if weights_half is not None:
        chosen[scale // 2] = weights_half
    cluster_spec = None
    if cluster is not None:
        from dualsr_deploy.infer.cluster import ClusterSpec, require_ray

        cluster_spec = ClusterSpec.parse(cluster, worker_cores=worker_cores, retries=retries, device=device)
        if not dry_run:
            require_ray()
        # the workers' device is the cluster's to decide (cuda where it has GPUs), not this machine's
        run_device = device or ("cuda" if engine == "trt" else "cpu")
    else:
        run_device = check_device(device or default_device())
    spec = EngineSpec(
        engine=engine,
        device=run_device,
        precision=precision,
        engines_dir=engines,
        weights=tuple(chosen.items()),
        compile=compile_model,
        half_scales=(scale // 2,) if stage == "dual" else (),
    )
    options = InferOptions(
        scale=scale,
        stage=stage,
        engine=spec,
        tile=tile,
        batch=batch,
        format=output_format,
        clip=clip,
        resume=resume,
        overwrite=overwrite,
        memory_budget=parse_bytes(memory_budget) if memory_budget else None,
        normalise=Normalisation.parse(normalise),
        key=key,
        layout=layout,
        root=root,
    )
    from dualsr_deploy.infer.run import Event

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=dry_run) as bar:
        tasks: dict[str, object] = {}

        def report(event: Event) -> None:
            if event.kind == "plan":
                tasks["scenes"] = bar.add_task("scenes", total=event.count or None, rate="")
                tasks["tiles"] = bar.add_task("tiles", total=event.total or None, rate="")
            elif event.kind == "scene":
                bar.update(tasks["tiles"], description=f"tiles of {escape(event.name)}")  # type: ignore[arg-type]
            elif event.kind == "tiles":
                bar.advance(tasks["tiles"], event.count)  # type: ignore[arg-type]
                task = bar.tasks[tasks["tiles"]]  # type: ignore[call-overload]
                if task.speed:
                    bar.update(tasks["tiles"], rate=f"{task.speed:.1f} tiles/s")  # type: ignore[arg-type]
            elif event.kind == "done" and event.record is not None:
                record = event.record
                if record.status != "ok" or record.mode == "streamed":
                    colour = "green" if record.status == "ok" else "red"
                    detail = f": {escape(record.error)}" if record.error else " (streamed)"
                    bar.console.print(f"[{colour}]{record.status}[/] {escape(record.name)}{detail}")
                if record.mode is not None:  # scenes that failed before running were never counted in
                    bar.advance(tasks["scenes"])  # type: ignore[arg-type]
            elif event.kind == "skip":
                bar.advance(tasks["scenes"])  # type: ignore[arg-type]
                bar.advance(tasks["tiles"], event.count)  # type: ignore[arg-type]
            elif event.kind == "message":
                bar.console.print(escape(event.text))

        report_result = run_archive(source, out, options, progress=report, dry_run=dry_run, cluster=cluster_spec)

    if dry_run:
        table = Table(title=f"dry run: {source} → {out}", title_justify="left")
        for column in ("scene", "bands × h × w", "action", "mode", "tiles", "output / reason"):
            table.add_column(column, overflow="fold")
        for planned in report_result.plan:
            shape = "×".join(map(str, planned.entry.shape)) if planned.entry.shape else "-"
            where = str(planned.output) if planned.action == "run" else (planned.reason or "")
            table.add_row(
                escape(planned.entry.name), shape, planned.action, planned.mode, str(planned.tiles), escape(where)
            )
        console.print(table)
        return

    label = ", ".join(report_result.engines) if cluster_spec is not None and report_result.engines else spec.label
    where = f", Ray {cluster_spec.text}" if cluster_spec is not None else ""
    table = Table(title=f"{source} → {out} (×{scale}, {stage}, {label}{where})", title_justify="left")
    heads = ["scene", "status", "output (bands × H × W)", "mode", "seconds", "SAM weight", "error"]
    if cluster_spec is not None:
        heads.insert(4, "worker")
    for head in heads:
        table.add_column(head, overflow="fold")
    for record in report_result.records:
        colour = "green" if record.status == "ok" else "red"
        shape = "×".join(map(str, record.shape_out)) if record.shape_out else "-"
        worker = [escape(record.worker or "-")] if cluster_spec is not None else []
        table.add_row(
            escape(record.name),
            f"[{colour}]{record.status}[/]",
            shape,
            record.mode or "-",
            *worker,
            f"{record.seconds.get('total', 0):.1f}",
            f"{record.sam_weight:.4f}" if record.sam_weight is not None else "-",
            escape(record.error or ""),
        )
    console.print(table)
    done = len(report_result.ok)
    per_minute = 60 * done / report_result.seconds if report_result.seconds else 0.0
    console.print(
        f"{done} done, {len(report_result.failed)} failed, {len(report_result.skipped)} skipped (done before) in "
        f"{report_result.seconds:.1f} s ({per_minute:.1f} scenes/min); manifest: {out / 'manifest.jsonl'}"
    )
    if report_result.interrupted:
        console.print("[yellow]interrupted[/]: finished scenes are kept; continue with the same command and --resume")
    raise typer.Exit(report_result.exit_code)


def register(app: typer.Typer) -> None:
    app.command()(infer)
