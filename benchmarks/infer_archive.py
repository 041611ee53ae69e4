"""Throughput and peak memory of ``run_archive`` (what ``dualsr infer`` runs) on the CAVE scenes, and the peak
memory of a scene streamed because it is several times larger than the memory budget.

    python benchmarks/infer_archive.py                          # 13 CAVE scenes at ×4: torch and onnx, coarse and dual
    python benchmarks/infer_archive.py --engines torch --stages dual --count 3
    python benchmarks/infer_archive.py --streamed-only          # one large scene, budget << its size

LR scenes are the MATLAB-bicubic ×4 downsampling of ``../shared/data/cave`` (128×128×31 each). Peak memory is the
peak resident set size (VmHWM, Linux) of a fresh process that ran one configuration.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dualsr_deploy.bench import MemoryPeak, status_bytes
from dualsr_deploy.data import open_archive, write_scene
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.infer import BackendSpec, InferOptions, run_archive
from dualsr_deploy.ops.imresize import imresize

SHARED = Path(os.environ.get("DUALSR_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def lr_archive(folder: Path, count: int, scale: int) -> tuple[Path, int]:
    """The first ``count`` CAVE scenes, degraded by ``scale``, as HDF5 in ``folder``; returns (folder, LR px·bands)."""
    archive = open_archive(SHARED / "data" / "cave")
    total = 0
    for item in list(archive.scenes())[:count]:
        assert item.scene is not None, item.error
        hr = torch.from_numpy(item.scene.cube).double()
        lr = imresize(hr, 1 / scale).clamp(0, 1).float().numpy()
        total += lr.size
        write_scene(folder / f"{item.entry.name}.h5", Scene(item.entry.name, np.ascontiguousarray(lr), item.scene.meta))
    return folder, total


def one_run(args: argparse.Namespace, folder: Path, work: Path, engine: str, stage: str) -> tuple[float, int]:
    """(seconds, peak RSS of this process) for one run; the ONNX export happens before the timed run."""
    spec = BackendSpec(backend=engine, artefacts_dir=work / "engines")
    options = InferOptions(scale=args.scale, stage=stage, backend=spec, tile=args.tile)
    if engine == "onnx":
        run_archive(folder, work / "warm", options)
    started = time.perf_counter()
    report = run_archive(folder, work / "out", options)
    seconds = time.perf_counter() - started
    assert report.exit_code == 0, report.failed
    return seconds, status_bytes("VmHWM")


def throughput(args: argparse.Namespace) -> None:
    """Each configuration in a fresh process, so each peak RSS is its own."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        folder, pixels = lr_archive(Path(tmp) / "lr", args.count, args.scale)
        print(f"{args.count} CAVE scenes at ×{args.scale}, {torch.get_num_threads()} threads, LR px·bands {pixels:,}")
        print("| engine | stage | seconds | scenes/min | LR Mpx·bands/s | peak RSS of the process |")
        print("|---|---|---|---|---|---|", flush=True)
        for engine in args.engines:
            for stage in args.stages:
                work = Path(tmp) / f"{engine}-{stage}"
                command = [sys.executable, __file__, "--one", engine, stage, str(folder), str(work)]
                command += ["--scale", str(args.scale)] + (["--tile", str(args.tile)] if args.tile else [])
                out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
                seconds, peak = float(out[-2]), int(out[-1])
                print(
                    f"| {engine} | {stage} | {seconds:.1f} | {60 * args.count / seconds:.1f} | "
                    f"{pixels / 1e6 / seconds:.3f} | {peak / 2**20:.0f} MiB |",
                    flush=True,
                )


def streamed(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        c, h, w = 31, args.large, args.large
        lr = (0.4 + 0.1 * rng.random((c, 1, 1)) + 0.05 * rng.random((c, h, w))).astype(np.float32)
        write_scene(Path(tmp) / "lr" / "large.npy", Scene("large", lr, SceneMeta(source="random", format="npy")))
        options = InferOptions(scale=args.scale, stage="dual", tile=args.tile, memory_budget=args.budget << 20)
        whole = options.working_bytes((c, h, w))
        out_bytes = 4 * c * h * w * args.scale**2
        started = time.perf_counter()
        with MemoryPeak(torch.device("cpu")) as anon:
            report = run_archive(Path(tmp) / "lr", Path(tmp) / "out", options)
        seconds = time.perf_counter() - started
        peak = status_bytes("VmHWM")
        assert report.exit_code == 0, report.failed
        print(
            f"scene {c}×{h}×{w} LR at ×{args.scale} dual: output {out_bytes / 2**20:.0f} MiB, whole-scene working "
            f"set ~{whole / 2**20:.0f} MiB, budget {args.budget} MiB ({whole / (args.budget << 20):.1f}× over)"
        )
        print(
            f"mode {report.records[0].mode}, {seconds:.1f} s, peak RSS of the process {peak / 2**20:.0f} MiB, peak "
            f"anonymous memory {anon.peak / 2**20:.0f} MiB above the process before the run"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=13)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile", type=int, default=None, help="LR tile (default: as dualsr infer chooses)")
    parser.add_argument("--engines", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--stages", nargs="+", default=["coarse", "dual"])
    parser.add_argument("--streamed-only", action="store_true")
    parser.add_argument("--large", type=int, default=256, help="LR size of the streamed scene")
    parser.add_argument("--budget", type=int, default=64, help="memory budget for the streamed scene, MiB")
    parser.add_argument("--one", nargs=4, metavar=("ENGINE", "STAGE", "ARCHIVE", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        engine, stage, folder, work = args.one
        seconds, peak = one_run(args, Path(folder), Path(work), engine, stage)
        print(seconds, peak)
        return
    if not args.streamed_only:
        throughput(args)
    streamed(args)


if __name__ == "__main__":
    main()
