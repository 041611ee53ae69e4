"""Measure the quality rule (:mod:`dualsr_deploy.backends.fidelity`) for a set of weights: each reduced precision
against fp32, on the held-out scenes of the patch store its model card was scored on, through the same path a run
takes (:class:`~dualsr_deploy.infer.upscaler.Upscaler`: tiles, batches, the backend's own graph or IR)."""

from __future__ import annotations

import datetime
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from dualsr_deploy.backends.fidelity import (
    FidelityRecord,
    SceneDelta,
    device_kind,
    device_words,
    file_sha256,
    software_versions,
)
from dualsr_deploy.backends.kinds import REFERENCE_BACKEND
from dualsr_deploy.errors import BackendUnavailableError, InputError

Scores = dict[str, dict[str, dict[str, float]]]  # scene → result (coarse, the fine stage) → psnr, sam


def measure_fidelity(
    weights: Path,
    scenes: Sequence[tuple[str, torch.Tensor, torch.Tensor]],
    *,
    precisions: Sequence[str],
    backends: Sequence[str] = ("torch",),
    device: str = "cpu",
    half: Path | None = None,
    tile: int | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> list[FidelityRecord]:
    """One record per backend × precision: fp32 and ``precision`` run on each ``(name, lr, hr)`` scene, their coarse
    and fine results scored against HR (clipped to [0, 1], as the card does).

    The time is taken on the scenes grown to a tile's window (:func:`timing_side`), not on the scenes as
    they are: held-out scenes are small (the airborne ones are 50 × 50 LR at ×2), and on them a backend's per-call
    overhead outweighs its work. On a 2-core AMD EPYC they ranked OpenVINO fp32 1.87× and ONNX Runtime 1.56× torch's
    speed on airborne ×2, while on 128 × 128 LR windows of the same scenes ONNX Runtime ran 1.24× and OpenVINO 1.16×,
    the order of an EMIT-like granule (1.36× and 1.04–1.17×, ``docs/results/granule.md``). The grown
    scenes are run once untimed, then once timed: an exported backend's export and compile, paid once per run and
    window shape, are not in the time, as they are not in an archive's hours (:mod:`dualsr_deploy.backends.choice`
    compares these times).

    ``fp32`` among ``precisions`` gives each backend an fp32 record: its fp32 result against torch's fp32 (the
    reference, whose own record is kept too) under the same rule, and its fp32 time. That is what ``--backend auto``
    compares where ``auto`` runs fp32 (a CPU without native bf16), and it checks that an exported graph computes
    what the reference does."""
    from dualsr_deploy.backends import backend_kind, check_backend
    from dualsr_deploy.backends.choice import unavailable
    from dualsr_deploy.checkpoint import read_checkpoint
    from dualsr_deploy.infer.stages import STAGE_WITHOUT_HALF

    if not scenes:
        raise InputError("no held-out scenes to measure the quality rule on")
    reduced = [p for p in precisions if p != "fp32"]
    if not reduced and "fp32" not in precisions:
        raise InputError(
            "--precision: name a reduced precision to measure against fp32 (bf16, fp16), or fp32 to time each "
            "backend's fp32 against torch's"
        )
    if "fp32" in precisions:  # the reference's record is kept too: --backend auto weighs the others against it
        backends = [REFERENCE_BACKEND, *(b for b in backends if b != REFERENCE_BACKEND)]
    plan = {b: [p for p in reduced if p in backend_kind(b).precisions] for b in backends}
    for backend, runs in plan.items():  # refused before minutes of measuring, not after: nothing measured is lost
        if runs or "fp32" in precisions:
            for precision in ["fp32", *runs]:
                check_backend(backend, precision, device)
            missing = unavailable(backend, device)
            if missing is not None:
                raise BackendUnavailableError(f"--backend {backend}: {missing}")
    _model, info = read_checkpoint(weights)
    scale = info.scale
    side = timing_side()
    probes = [grown(lr, side) for _name, lr, _hr in scenes]
    stage = "dual" if half is not None else STAGE_WITHOUT_HALF
    records = []

    def record(backend: str, precision: str, seconds_fp32: float, seconds: float, base: Scores, got: Scores) -> None:
        deltas = tuple(
            SceneDelta(name, result, base[name][result]["psnr"], base[name][result]["sam"], s["psnr"], s["sam"])
            for name, by_result in got.items()
            for result, s in by_result.items()
        )
        records.append(
            FidelityRecord(
                backend=backend,
                precision=precision,
                kind=device_kind(device),
                device=device_words(device),
                stage=stage,
                scale=scale,
                tile=tile,
                half_sha256=file_sha256(half) if half is not None else None,
                seconds_fp32=seconds_fp32,
                seconds=seconds,
                measured=datetime.date.today().isoformat(),
                software=software_versions(backend),
                scenes=deltas,
                timed_side=side,
            )
        )

    with tempfile.TemporaryDirectory(prefix="dualsr-fidelity-") as engines:

        def run(backend: str, precision: str) -> tuple[float, Scores]:
            seconds, scores = _timed_pass(
                weights, scenes, probes, backend, precision, scale, stage, device, half, tile, Path(engines)
            )
            say(f"{backend} {precision}: {len(scenes)} scenes scored, timed {seconds:.2f} s on {side}² windows")
            return seconds, scores

        reference = run(REFERENCE_BACKEND, "fp32") if "fp32" in precisions else None
        for backend, runs in plan.items():
            if not runs and reference is None:
                say(f"{backend} runs none of {', '.join(reduced)}: skipped")
                continue
            if backend == REFERENCE_BACKEND and reference is not None:
                seconds_fp32, fp32 = reference
            else:
                seconds_fp32, fp32 = run(backend, "fp32")
            if reference is not None:
                record(backend, "fp32", seconds_fp32, seconds_fp32, reference[1], fp32)
            for precision in runs:
                seconds, got = run(backend, precision)
                record(backend, precision, seconds_fp32, seconds, fp32, got)
    return records


def timing_side() -> int:
    """The side, in LR pixels, of the windows a record's time is taken on: a tile of
    :data:`~dualsr_deploy.infer.options.AUTO_TILE`, the largest a scene held in memory runs as one window. (A scene a
    halo larger runs as four overlapping windows: several times the time for the same measure.)"""
    from dualsr_deploy.infer.options import AUTO_TILE

    return AUTO_TILE


def grown(lr: torch.Tensor, side: int) -> torch.Tensor:
    """``lr (C, h, w)`` repeated along its rows and columns to at least ``side`` × ``side`` (a longer side is kept):
    the scene's own spectra at a working window's size, for timing."""
    height, width = lr.shape[-2:]
    if height >= side and width >= side:
        return lr
    rows, cols = max(side, height), max(side, width)
    repeated = lr.repeat(1, -(-rows // height), -(-cols // width))
    return repeated[:, :rows, :cols].contiguous()


def _timed_pass(
    weights: Path,
    scenes: Sequence[tuple[str, torch.Tensor, torch.Tensor]],
    probes: Sequence[torch.Tensor],
    backend: str,
    precision: str,
    scale: int,
    stage: str,
    device: str,
    half: Path | None,
    tile: int | None,
    engines: Path,
) -> tuple[float, Scores]:
    """The scenes through ``backend`` in ``precision``, scored; then ``probes`` (the scenes grown, :func:`grown`) once
    untimed and once timed: the timed seconds and the scores."""
    from dualsr_deploy.infer.options import BackendSpec, InferOptions
    from dualsr_deploy.infer.upscaler import Upscaler
    from dualsr_deploy.train.validate import score_cube

    spec = BackendSpec.for_run(
        backend,
        scale=scale,
        stage=stage,
        device=device,
        precision=precision,
        artefacts_dir=engines,
        weights=weights,
        weights_half=half,
    )
    options = InferOptions(scale=scale, stage=stage, backend=spec, tile=tile)
    seconds = 0.0
    scores: Scores = {}
    with Upscaler(options) as upscaler:
        for probe in probes:  # opens (and exports, compiles) the backend for each band count and window shape
            upscaler(probe)
        for probe in probes:
            start = time.perf_counter()
            upscaler(probe)
            seconds += time.perf_counter() - start
        for name, lr, hr in scenes:
            out = upscaler(lr)
            results = {"coarse": out.coarse}
            if out.fine is not None:
                results[stage] = out.fine
            scores[name] = {
                result: score_cube(cube.float().cpu().clamp(0.0, 1.0), hr.float()) for result, cube in results.items()
            }
    return seconds, scores


def fidelity_section(records: Sequence[FidelityRecord], weights_name: str) -> str:
    """The model card's section for ``records``: the rule, per record a verdict, and per scene the changes."""
    from dualsr_deploy.backends.fidelity import RULE_TEXT, timing_words

    lines = [
        "## Precision (the quality rule)",
        "",
        f"A reduced precision is acceptable when, on these held-out scenes, {RULE_TEXT} (coarse and fine results);"
        f" `--precision auto` uses it only then. Measured with `dualsr card {weights_name} … --precision …`, kept in"
        f" `{Path(weights_name).stem}.fidelity.json`.",
        "",
        "| backend | precision | device | scene | result | PSNR fp32 | ΔPSNR (dB) | SAM fp32 | ΔSAM (°) | passes |",
        "|---|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for record in records:
        for s in record.scenes:
            lines.append(
                f"| {record.backend} | {record.precision} | {record.kind} | {s.scene} | {s.result} | "
                f"{s.psnr_fp32:.3f} | {s.d_psnr:+.4f} | {s.sam_fp32:.3f} | {s.d_sam:+.4f} | "
                f"{'yes' if s.passes() else '**no**'} |"
            )
    lines.append("")
    if any(r.precision == "fp32" for r in records):
        lines += [
            "An fp32 record holds a backend's fp32 against torch's fp32 (the reference), and its fp32 time: what "
            "`--backend auto` compares where `--precision auto` runs fp32.",
            "",
        ]
    for record in records:
        drop, rise = record.worst()
        lines.append(
            f"- {record.backend} {record.precision} on {record.device} ({record.kind}): "
            f"{'**passes**' if record.passes() else '**fails**'} (worst {-drop:+.4f} dB, SAM {rise:+.4f}°), "
            f"{speed_words(record, records)} on {timing_words(record.timed_side)}."
        )
    return "\n".join(lines) + "\n"


def speed_words(record: FidelityRecord, measured: Sequence[FidelityRecord]) -> str:
    """``record``'s speed in words: a reduced precision's against its own backend's fp32; an fp32 record's against
    torch's fp32 among ``measured`` (the records of the same measurement)."""
    if record.precision != "fp32":
        return f"{record.speedup:.2f}× fp32's speed ({record.seconds_fp32:.2f} s → {record.seconds:.2f} s)"
    reference = next((r for r in measured if (r.backend, r.precision) == (REFERENCE_BACKEND, "fp32")), None)
    if reference is None or record.backend == REFERENCE_BACKEND:
        return f"{record.seconds:.2f} s"
    return (
        f"{reference.seconds / record.seconds:.2f}× {REFERENCE_BACKEND} fp32's speed "
        f"({reference.seconds:.2f} s → {record.seconds:.2f} s)"
    )


__all__ = ["fidelity_section", "grown", "measure_fidelity", "speed_words", "timing_side"]
