"""``dualsr bench``: how fast each backend super-resolves a CAVE-size scene, against the eager per-band loop and
against the device's own matmul ceiling.

One measurement is one whole LR scene (``--size`` HR pixels, 31 bands) through a backend, tile by tile with the
receptive-field halo, batched and padded as ``dualsr infer`` batches (``--batch``: infer's default per device).
Each configuration runs in a fresh process (``isolate``), so that its peak memory is its own, and is warmed up once
and timed ``repeats`` times (CUDA events on a GPU, ``perf_counter`` on CPU). The baseline is the published per-band
eager loop in float32 on the same device and the same whole scene, timed in the same run, so every figure has a
ratio against it. Achieved GFLOP/s counts the network's useful FLOPs (one scene, halos excluded, from
``torch.utils.flop_counter``) over the median time, and is given as a fraction of a large square matmul measured on
the same device and precision.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dualsr_deploy._version import __version__
from dualsr_deploy.archs.coarsr import CoarSR, CoarSRConfig, per_band_loop
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.backends import Backend, backend_kind, check_backend, create
from dualsr_deploy.backends.kinds import CALIBRATED_PRECISIONS
from dualsr_deploy.bench.advice import compare_rows
from dualsr_deploy.bench.measure import MemoryPeak, matmul_ceiling, time_runs
from dualsr_deploy.bench.report import MODELS, BenchOptions, BenchReport, Row
from dualsr_deploy.errors import BackendUnavailableError, ExportError, InputError
from dualsr_deploy.infer.batching import grid_jobs, run_batches
from dualsr_deploy.infer.tiling import TileGrid, receptive_radius

BASELINE = "eager loop"  # the published per-band loop's row


def _scene(options: BenchOptions, scale: int, device: torch.device) -> torch.Tensor:
    lr = options.size // scale
    return torch.rand(1, options.bands, lr, lr, generator=torch.Generator().manual_seed(0)).to(device)


def _model(options: BenchOptions, scale: int) -> CoarSR:
    feats, blocks = MODELS[options.model]
    torch.manual_seed(0)
    return CoarSR(CoarSRConfig(scale, feats, blocks)).eval()


def useful_flops(model: CoarSR, bands: int, height: int, width: int) -> float:
    """FLOPs of the folded network for one LR cube (no halos), counted by ``torch.utils.flop_counter``: the
    network's own work, its tail as published (a float32 torch run does ~7× less in the tail at ×4 by composing it,
    :mod:`dualsr_deploy.archs.tail`, so its GFLOP/s reads as the published network's FLOPs per second)."""
    from torch.utils.flop_counter import FlopCounterMode

    core = fold_coarsr(model, "paper").use_channels_last(False)
    core.pixels_per_call = None
    core.compose_tail = False
    probe = torch.rand(1, bands, min(height, 32), min(width, 32))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        core(probe)
    per_pixel = counter.get_total_flops() / (probe.shape[-1] * probe.shape[-2])
    return float(per_pixel * height * width)


def tiled_scene(backend: Backend, lr: torch.Tensor, tile: int, halo: int, batch: int) -> torch.Tensor:
    """The coarse SR of one LR scene ``(1, C, h, w)`` through ``backend``, tiled and batched as ``dualsr infer``
    does it (:func:`dualsr_deploy.infer.batching.run_batches`)."""
    _, c, h, w = lr.shape
    s = backend.capabilities.scale
    out = torch.empty((c, s * h, s * w), device=backend.device)
    run_batches(backend, grid_jobs(lr[0], TileGrid(h, w, tile, halo), out), batch)
    return out


def _backends(
    options: BenchOptions, model: CoarSR, work: Path, skipped: list[str]
) -> list[tuple[str, str, str | None]]:
    """Every backend × precision asked for, with the artefact it runs (graphs, IR and plans exported into ``work``
    first; None for torch); those that cannot be made here are listed in ``skipped`` with the reason. Each is built
    by :func:`dualsr_deploy.backends.create` where it is timed (:func:`measure`). Graphs and IR have the form a run
    makes for the device (band-chunk graphs for ONNX Runtime and OpenVINO on a CPU: :meth:`BackendKind.band_chunk`)."""
    from dualsr_deploy.export.onnx import Precision, torch2onnx

    core = fold_coarsr(model, "paper")
    found: list[tuple[str, str, str | None]] = []
    for name in options.backends:
        for precision in options.precisions:
            try:
                check_backend(name, precision, options.device)
                if precision in CALIBRATED_PRECISIONS:  # never an fp32 graph under an int8 label
                    raise InputError(
                        "INT8 graphs need a calibration that passed the quality rule (dualsr export --int8 "
                        "--calibrate STORE); the bench does not make them"
                    )
                artefact: Path | None = None
                kind = backend_kind(name).artefact
                chunk = backend_kind(name).band_chunk(options.device, precision)
                if kind == "graph":
                    graph_precision: Precision = "fp16" if precision == "fp16" else "fp32"
                    graph = work / f"x{core.scale}_{precision}{'' if chunk is None else f'_chunk{chunk}'}.onnx"
                    artefact = torch2onnx(core, graph, bands=options.bands, precision=graph_precision, band_chunk=chunk)
                elif kind == "plan":
                    artefact = _build_plan(options, core, work, precision)
                elif kind == "ir":
                    artefact = _convert_ir(options, core, work, chunk)
                found.append((name, precision, str(artefact) if artefact is not None else None))
            except (BackendUnavailableError, InputError, ExportError) as exc:
                skipped.append(f"{name}-{precision}: {exc}")
    return found


@dataclass(frozen=True)
class Config:
    """One timed configuration: the eager loop (``backend`` ``eager loop``) or a backend × precision × tile, with
    what it needs to be rebuilt in a fresh process (the model and scene are seeded, so every process builds the
    same ones)."""

    options: BenchOptions
    scale: int
    backend: str
    precision: str
    artefact: str | None
    tile: int | None
    threads: int


@dataclass(frozen=True)
class Measured:
    times: list[float]
    peak_memory: int
    memory_kind: str
    error: str | None = None  # the backend could not be made or opened here: why
    process: int = 0  # the process that timed it


def measure(config: Config) -> Measured:
    """Time one configuration and measure the memory its runs take above what its backend holds open; run in a
    process of its own (:func:`measured`) so that no allocator, arena or cache of an earlier configuration makes
    its figure read low."""
    options = config.options
    torch.set_num_threads(config.threads)
    device = torch.device(options.device)
    model = _model(options, config.scale)
    lr = _scene(options, config.scale, device)
    if config.backend == BASELINE:
        eager = model.to(device)
        with MemoryPeak(device) as memory, torch.inference_mode():
            times = time_runs(lambda: per_band_loop(eager, lr, "paper"), options.repeats, device)
        return Measured(times, memory.peak, memory.kind, process=os.getpid())
    assert config.tile is not None
    tile, halo = config.tile, receptive_radius(model.config)
    artefact = Path(config.artefact) if config.artefact is not None else None
    try:
        backend = create(
            config.backend,
            core=fold_coarsr(model, "paper"),
            artefact=artefact,
            device=options.device,
            precision=config.precision,
        )
        backend.open()
    except (BackendUnavailableError, InputError, ExportError) as exc:
        return Measured([], 0, "", f"{config.backend}-{config.precision}: {exc}", os.getpid())
    try:
        with MemoryPeak(device) as memory:
            times = time_runs(lambda: tiled_scene(backend, lr, tile, halo, options.batch), options.repeats, device)
    finally:
        backend.close()
    return Measured(times, memory.peak, memory.kind, process=os.getpid())


def measured(config: Config) -> Measured:
    """:func:`measure` in a fresh process (``spawn``) when ``options.isolate``, else here."""
    if not config.options.isolate:
        return measure(config)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, config).result()


def _convert_ir(options: BenchOptions, core: Any, work: Path, chunk: int | None) -> Path:
    """OpenVINO IR of ``core`` (one fp32 IR serves fp32 and bf16, a runtime hint), converted once per scale and
    form (``chunk``: a band-chunk graph's bands a call)."""
    from dualsr_deploy.export.onnx import torch2onnx
    from dualsr_deploy.export.openvino import onnx2ir
    from dualsr_deploy.runtimes import import_openvino

    import_openvino()
    graph = work / f"x{core.scale}_openvino{'' if chunk is None else f'_chunk{chunk}'}.onnx"
    xml = graph.with_suffix(".xml")
    if xml.is_file():
        return xml
    return onnx2ir(torch2onnx(core, graph, bands=options.bands, precision="fp32", band_chunk=chunk))


def _build_plan(options: BenchOptions, core: Any, work: Path, precision: str) -> Path:
    """A TensorRT plan of ``core`` whose profile covers every tile window of the run (built here, per GPU).

    Written against TensorRT's documented API like :mod:`dualsr_deploy.export.tensorrt`; not run here (no
    TensorRT on the development machines)."""
    from dualsr_deploy.export.onnx import torch2onnx
    from dualsr_deploy.export.recipes import TensorRTProfile
    from dualsr_deploy.export.tensorrt import onnx2engine
    from dualsr_deploy.runtimes import require_tensorrt

    require_tensorrt()
    if precision not in ("fp32", "fp16"):
        raise InputError(f"TensorRT plans are fp32 or fp16, not {precision}")
    lr_side = options.size // core.scale
    halo = receptive_radius(core.config)
    windows = sorted(min(tile + 2 * halo, lr_side) for tile in options.tiles)
    profile = TensorRTProfile(
        min_tile=(1, windows[0], windows[0]),
        opt_tile=(options.batch, windows[-1], windows[-1]),
        max_tile=(options.batch, windows[-1], windows[-1]),
    )
    graph = torch2onnx(
        core,
        work / f"x{core.scale}_{precision}_trt.onnx",
        bands=options.bands,
        precision="fp16" if precision == "fp16" else "fp32",
    )
    return onnx2engine(graph, work / f"x{core.scale}_{precision}.plan", precision=precision, profile=profile)


def run_bench(
    options: BenchOptions, *, work_dir: str | os.PathLike[str], progress: Callable[[str], None] | None = None
) -> BenchReport:
    """Measure every backend × precision × tile size × scale, and the eager baseline per scale."""
    say = progress or (lambda _text: None)
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda: torch sees no CUDA device")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dualsr": __version__,
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    report = BenchReport(options, machine)
    ceilings: dict[str, float] = {}
    for precision in {"fp32", *options.precisions}:
        say(f"matmul ceiling ({precision})")
        ceilings[precision] = matmul_ceiling(device, precision)
    machine["matmul_ceiling_gflops"] = ceilings
    threads = torch.get_num_threads()
    for scale in options.scales:
        model = _model(options, scale)
        lr = _scene(options, scale, device)
        _, c, h, w = lr.shape
        flops = useful_flops(model, c, h, w)
        del lr
        baseline_median = None
        if options.baseline:
            say(f"×{scale}: eager per-band loop, float32")
            got = measured(Config(options, scale, BASELINE, "fp32", None, None, threads))
            row = Row(BASELINE, "fp32", scale, None, got.times, flops, c * h * w, ceilings["fp32"], got.peak_memory,
                      got.memory_kind)  # fmt: skip
            baseline_median = row.median
            row.baseline_median = baseline_median
            report.rows.append(row)
        for name, precision, artefact in _backends(options, model.cpu(), work, report.skipped):
            for tile in options.tiles:
                say(f"×{scale}: {name} {precision}, tile {tile}")
                got = measured(Config(options, scale, name, precision, artefact, tile, threads))
                if got.error is not None:
                    report.skipped.append(got.error)
                    break
                report.rows.append(
                    Row(
                        name,
                        precision,
                        scale,
                        tile,
                        got.times,
                        flops,
                        c * h * w,
                        ceilings[precision],
                        got.peak_memory,
                        got.memory_kind,
                        baseline_median,
                    )
                )
    compare_rows(report)
    return report


def write_outputs(report: BenchReport, *, json_path: Path | None, plot_path: Path | None, history: Path | None) -> None:
    from dualsr_deploy.atomic import atomic_output

    data = report.to_dict()
    if json_path is not None:
        with atomic_output(json_path) as tmp:
            tmp.write_text(json.dumps(data, indent=2) + "\n")
    if history is not None:
        history.parent.mkdir(parents=True, exist_ok=True)
        with history.open("a") as handle:
            handle.write(json.dumps(data) + "\n")
    if plot_path is not None:
        from dualsr_deploy.evaluation.figures import png_bytes, pyplot

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.5, 4))
        series: dict[str, list[tuple[int, float]]] = {}
        for row in report.rows:
            if row.tile is not None:
                series.setdefault(f"{row.backend} {row.precision} ×{row.scale}", []).append(
                    (row.tile, row.lr_pixels_bands / row.median / 1e6)
                )
        for label, points in series.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        for row in report.rows:
            if row.tile is None:
                rate = row.lr_pixels_bands / row.median / 1e6
                ax.axhline(rate, linestyle="--", color="grey", linewidth=1, label=f"eager loop ×{row.scale}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tile (LR pixels)")
        ax.set_ylabel("LR Mpx·bands / s")
        ax.set_title(f"{report.machine['device']}, {report.machine['threads']} threads", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        with atomic_output(plot_path) as tmp:
            tmp.write_bytes(png_bytes(fig))


__all__ = ["Config", "Measured", "measure", "measured", "run_bench", "tiled_scene", "useful_flops", "write_outputs"]
