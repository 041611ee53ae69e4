"""Scenes per minute of ``dualsr infer`` alone and on a local Ray cluster of 1 and 2 CPU workers.

    python benchmarks/cluster_scaling.py                 # 13 CAVE scenes at ×4, dual stage, torch on CPU
    python benchmarks/cluster_scaling.py --count 6 --stage coarse

Two questions, two sets of rows. Scaling with workers at a fixed thread count: ``local:1`` and ``local:2`` with one
core per worker (``--worker-cores 1``). And the use of this machine: the single process and ``local:1`` use both
cores as torch threads, ``local:2`` as two workers of one thread. Ray is started once, before the timed runs
(``ray.init``, ~5 s here, is not in the figures); each timed cluster run includes starting its workers (importing
torch, loading the weights), as every ``dualsr infer --cluster`` run does. LR scenes are made as in
``infer_archive.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer_archive import lr_archive

from dualsr_deploy.infer import Event, InferOptions, run_archive
from dualsr_deploy.infer.executors.ray_spec import ClusterSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=13)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--stage", default="dual")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    import ray

    cores = os.cpu_count() or 1
    options = InferOptions(scale=args.scale, stage=args.stage)
    with tempfile.TemporaryDirectory() as tmp:
        folder, _pixels = lr_archive(Path(tmp) / "lr", args.count, args.scale)
        ray.init(
            address="local", num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False
        )
        print(f"{args.count} CAVE scenes at ×{args.scale}, {args.stage} stage, torch on CPU, {cores} cores")
        print("| run | workers × threads | seconds | scenes/min | first worker ready after |")
        print("|---|---|---|---|---|", flush=True)
        configs: list[tuple[str, ClusterSpec | None]] = [
            ("--cluster local:1 --worker-cores 1", ClusterSpec.parse("local:1", worker_cores=1)),
            ("--cluster local:2", ClusterSpec.parse("local:2")),
            ("single process", None),
            ("--cluster local:1", ClusterSpec.parse("local:1")),
        ]
        for _repeat in range(args.repeats):
            for label, spec in configs:
                out = Path(tmp) / f"out-{len(list(Path(tmp).glob('out-*')))}"
                ready: list[float] = []
                started = time.perf_counter()

                def note(event: Event, started: float = started, ready: list[float] = ready) -> None:
                    if event.kind == "message" and " ready: " in event.text and not ready:
                        ready.append(time.perf_counter() - started)

                report = run_archive(folder, out, options, cluster=spec, progress=note)
                seconds = time.perf_counter() - started
                assert report.exit_code == 0, report.failed
                if spec is None:
                    shape = f"1 × {torch.get_num_threads()}"
                else:
                    shape = f"{spec.local_workers} × {spec.worker_cores or cores // spec.local_workers}"
                first = f"{ready[0]:.1f} s" if ready else "-"
                print(f"| {label} | {shape} | {seconds:.1f} | {60 * args.count / seconds:.1f} | {first} |", flush=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
