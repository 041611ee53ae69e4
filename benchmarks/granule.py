"""An EMIT granule through ``dualsr infer --scale 2 --stage coarse``: wall time, throughput, peak memory, the share
of the network, the I/O floor, and what an archive of them costs.

    python benchmarks/granule.py --work /tmp/granule                       # full granule, 1242 x 1280 x 285
    python benchmarks/granule.py --work /tmp/granule --lines 64            # a full-width slice (same strips)
    python benchmarks/granule.py --work /tmp/granule --budgets 1G,2G       # streamed, peak RSS vs the budget
    python benchmarks/granule.py --work /tmp/granule --busy 2              # beside two busy loops
    python benchmarks/granule.py --work /tmp/granule --resume              # skip the runs already in results.jsonl

The granule is generated (never committed) from the real EMIT L2A spectra of
``../shared/data/products/emit_l2a_envi`` (100 pixels × 285 bands): each pixel a smooth mixture of three of them,
written with netCDF4 in EMIT's structure (``tests/interop/producers.py``). Each configuration is one fresh
``dualsr infer`` process; its peak RSS is GNU time's maximum resident set size. "network" is the seconds the run
spent in the coarse stage (tiles through the backend and pasted; the manifest's ``seconds``), so infer / network
is what the pipeline adds. The I/O floor is the same granule read, MATLAB-bicubic ×2 and written in the same format
(``--backend`` none: :func:`imresize` alone), in this process. Results are appended to ``<work>/results.jsonl`` one
line per run (``--resume`` skips those done) and summarised as Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUALSR_SHARED", ROOT.parent / "shared"))
EMIT_SPECTRA = SHARED / "data" / "products" / "emit_l2a_envi" / "emit20250324t221005_jpl_unmix_ex.hdr"
GRANULE = (1242, 1280, 285)  # downtrack, crosstrack, bands of an EMIT L2A granule
CONFIGS = {  # bf16 runs only on CPUs with native bf16 (AVX512-BF16, AMX): elsewhere dualsr refuses it, and so here
    "default": [],  # what `dualsr infer` does unasked: torch, --precision auto (the quality rule's choice)
    "fp32": ["--backend", "torch", "--precision", "fp32"],
    "bf16": ["--backend", "torch", "--precision", "bf16"],
    "onnx-fp32": ["--backend", "onnx", "--precision", "fp32"],
    "openvino-fp32": ["--backend", "openvino", "--precision", "fp32"],
    "openvino-bf16": ["--backend", "openvino", "--precision", "bf16"],
}


def make_granule(path: Path, lines: int, seed: int = 0) -> tuple[int, int, int]:
    """An EMIT-like granule of ``lines`` × 1280 × 285 at ``path`` from the real EMIT spectra."""
    sys.path.insert(0, str(ROOT))
    from dualsr_deploy.data import read_scene
    from tests.interop.producers import write_emit_granule

    source = read_scene(EMIT_SPECTRA)
    spectra = source.raw().reshape(source.cube.shape[0], -1).T.astype(np.float32)  # (100, 285)
    rows, cols, bands = lines, GRANULE[1], GRANULE[2]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cube = np.empty((rows, cols, bands), np.float32)
    weights = []
    for _ in range(3):  # smooth abundance fields, a few hundred metres across
        fx, fy, phase = rng.uniform(0.005, 0.03), rng.uniform(0.005, 0.03), rng.uniform(0, 2 * np.pi)
        weights.append(1.0 + np.sin(fx * xx + phase) * np.cos(fy * yy))
    total = sum(weights)
    picks = rng.choice(len(spectra), size=(3,), replace=False)
    for top in range(0, rows, 64):
        part = slice(top, min(top + 64, rows))
        cube[part] = sum((w[part] / total[part])[..., None] * spectra[k] for w, k in zip(weights, picks, strict=True))
    assert source.meta.wavelengths is not None
    write_emit_granule(path, cube=cube, fill_cols=0, wavelengths=np.asarray(source.meta.wavelengths, dtype=np.float32))
    return rows, cols, bands


def io_floor(granule: Path, out: Path) -> float:
    """Seconds to read the granule, resize it ×2 (MATLAB bicubic) and write it as EMIT NetCDF, here."""
    import torch

    from dualsr_deploy.data import read_scene, write_scene
    from dualsr_deploy.data.scene import Scene
    from dualsr_deploy.infer.context import output_meta
    from dualsr_deploy.ops.imresize import imresize

    start = time.perf_counter()
    scene = read_scene(granule)
    up = imresize(torch.from_numpy(scene.cube), 2).numpy()
    write_scene(out, Scene(scene.name, up, output_meta(scene.meta, 2)), units="source")
    return time.perf_counter() - start


def busy_loops(count: int) -> list[multiprocessing.Process]:
    def spin() -> None:
        while True:
            pass

    loops = [multiprocessing.Process(target=spin, daemon=True) for _ in range(count)]
    for loop in loops:
        loop.start()
    return loops


def run_infer(granules: Path, out: Path, config: str, budget: str | None, threads: str | None) -> dict[str, Any]:
    command = ["/usr/bin/time", "-f", "%M %e", sys.executable, "-m", "dualsr_deploy", "infer", str(granules)]
    command += [
        "-o",
        str(out),
        "--scale",
        "2",
        "--stage",
        "coarse",
        "--overwrite",
        "--engines",
        str(out.parent / "eng"),
    ]
    command += CONFIGS[config]
    if budget:
        command += ["--memory-budget", budget]
    if threads:
        command += ["--threads", threads]
    row = timed(command)
    if "error" not in row:
        row["record"] = json.loads((out / "manifest.jsonl").read_text().splitlines()[-1])
    return row


def timed(command: list[str]) -> dict[str, Any]:
    """Run ``command`` under GNU time: its wall seconds and peak RSS, or its error."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout)[-2000:]}
    peak_kb, wall = done.stderr.strip().splitlines()[-1].split()
    return {"wall_s": float(wall), "peak_rss_bytes": int(peak_kb) * 1024}


def run_convert(granules: Path, out: Path, budget: str | None) -> dict[str, Any]:
    """``dualsr data convert`` of the granule to ENVI in its units: wall time and peak RSS."""
    command = ["/usr/bin/time", "-f", "%M %e", sys.executable, "-m", "dualsr_deploy", "data", "convert", str(granules)]
    command += [str(out), "--to", ".hdr", "--units", "source", "--force"]
    if budget:
        command += ["--memory-budget", budget]
    return timed(command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="where the granule and outputs go")
    parser.add_argument("--lines", type=int, default=GRANULE[0], help="downtrack lines (1242: a full granule)")
    parser.add_argument("--configs", default="", help=f"of {', '.join(CONFIGS)} (default: all this CPU runs)")
    parser.add_argument("--budgets", default="", help="--memory-budget values to run each config with (e.g. 1G,2G)")
    parser.add_argument("--busy", type=int, default=0, help="busy loops beside the runs")
    parser.add_argument("--threads", default=None, help="--threads for dualsr infer (default: its own)")
    parser.add_argument("--workers", type=int, default=8, help="Ray workers for the archive estimate")
    parser.add_argument("--resume", action="store_true", help="skip runs already in results.jsonl")
    parser.add_argument("--convert", action="store_true", help="also time dualsr data convert (to ENVI) per budget")
    args = parser.parse_args()
    if not EMIT_SPECTRA.is_file():
        sys.exit(f"{EMIT_SPECTRA} not found: this benchmark needs ../shared")
    work: Path = args.work
    granules = work / f"granules_{args.lines}"
    granule = granules / "EMIT_L2A_RFL_001_20230401T185249_2309112_002.nc"
    if not granule.is_file():
        granules.mkdir(parents=True, exist_ok=True)
        shape = make_granule(granule, args.lines)
        print(f"made {granule} {shape}", file=sys.stderr)
    from dualsr_deploy.runtimes import cpu_native_bf16

    configs = args.configs.split(",") if args.configs else [c for c in CONFIGS if cpu_native_bf16() or "bf16" not in c]
    results = work / "results.jsonl"
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    seen = {key_of(r) for r in done}
    loops = busy_loops(args.busy)
    try:
        if args.resume and (args.lines, "io-floor", None, args.busy, None) in seen:
            pass
        else:
            seconds = io_floor(granule, work / "floor" / granule.name)
            row = {"lines": args.lines, "config": "io-floor", "budget": None, "busy": args.busy, "threads": None}
            row["wall_s"] = seconds
            done.append(row)
            with results.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
        for config in configs:
            for budget in [None, *[b for b in args.budgets.split(",") if b]]:
                row = {"lines": args.lines, "config": config, "budget": budget, "busy": args.busy}
                row["threads"] = args.threads
                if args.resume and key_of(row) in seen:
                    continue
                row |= run_infer(granules, work / "out" / config, config, budget, args.threads)
                done.append(row)
                with results.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(json.dumps({k: v for k, v in row.items() if k != "record"}), file=sys.stderr)
        for budget in [None, *[b for b in args.budgets.split(",") if b]] if args.convert else []:
            row = {"lines": args.lines, "config": "data convert", "budget": budget, "busy": args.busy}
            row["threads"] = None
            if args.resume and key_of(row) in seen:
                continue
            row |= run_convert(granules, work / "out" / "convert", budget)
            done.append(row)
            with results.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), file=sys.stderr)
    finally:
        for loop in loops:
            loop.terminate()
    print(summary(done, args.workers))


def key_of(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["lines"], row["config"], row["budget"], row["busy"], row["threads"]


def summary(rows: list[dict[str, Any]], workers: int) -> str:
    lines = [
        "| lines | config | ran | budget | busy | wall s | LR Mpx·bands/s | peak RSS | network s | infer / network | "
        f"1,000 granules, 1 machine | on {workers} workers |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row['lines']} | {row['config']} | | {row['budget']} | {row['busy']} | failed | | | | | | |"
            )
            continue
        mpx = row["lines"] * GRANULE[1] * GRANULE[2] / 1e6
        scale_up = GRANULE[0] / row["lines"]
        record = row.get("record") or {}
        seconds = record.get("seconds") or {}
        network = seconds.get("coarse") or seconds.get("compute")
        ratio = f"{row['wall_s'] / network:.2f}" if network else ""
        archive_h = row["wall_s"] * scale_up * 1000 / 3600
        peak = f"{row['peak_rss_bytes'] / 2**30:.2f} GiB" if "peak_rss_bytes" in row else ""
        lines.append(
            f"| {row['lines']} | {row['config']} | {record.get('backend', '')} | {row['budget'] or 'default'} | "
            f"{row['busy']} | "
            f"{row['wall_s']:.1f} | {mpx / row['wall_s']:.3f} | {peak} | {network or ''} | {ratio} | "
            f"{archive_h:.0f} h | {archive_h / workers:.0f} h |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
