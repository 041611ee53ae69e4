"""Validation PSNR against wall-clock time for training schedules and precisions (issue: faster training on CPU).

    python benchmarks/train_schedules.py STORE.h5 OUT/ --minutes 10 --n-feats 16 --threads 1
    python benchmarks/train_schedules.py STORE.h5 OUT/ --report-only      # table and figure of finished runs

Each configuration is an ordinary ``dualsr train`` run in ``OUT/<name>/`` with a time limit, validating about every
two minutes of its own speed; a configuration whose run folder already has a ``stop`` record is not run again. The
report (``OUT/schedules.csv``, ``schedules.md``, ``schedules.png``) gives, per configuration, the validation PSNR
(mean over the store's held-out scenes) against hours of training time, and the best PSNR reached.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# name, schedule, precision, learning rate, seconds per step measured once (for the validation cadence only)
CONFIGS = (
    ("band-fp32", "band", "fp32", 1e-4),
    ("band-bf16", "band", "bf16", 1e-4),
    ("parallel-fp32", "parallel", "fp32", 1e-4),
    ("parallel-bf16", "parallel", "bf16", 1e-4),
    ("parallel-bf16-lr5e-4", "parallel", "bf16", 5e-4),
)


def _seconds_per_step(store: Path, schedule: str, precision: str, n_feats: int, threads: int) -> float:
    """Time three steps (after one warm-up) of this configuration on the store's first batch."""
    import torch

    from dualsr_deploy.archs.coarsr import CoarSR, CoarSRConfig
    from dualsr_deploy.data.patches import PatchDataset, read_store_info
    from dualsr_deploy.train.schedule import BandParallel, autocast_dtype, train_batch, train_batch_parallel

    torch.set_num_threads(threads)
    info = read_store_info(store)
    data = PatchDataset(store)
    lr = torch.stack([data[i][0] for i in range(16)])
    hr = torch.stack([data[i][1] for i in range(16)])
    model = CoarSR(CoarSRConfig(info.scale, n_feats, 1)).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    amp = autocast_dtype(precision, torch.device("cpu"))
    network = BandParallel(model, "paper")

    def step() -> None:
        if schedule == "parallel":
            train_batch_parallel(network, optimizer, lr, hr, scale=info.scale, amp_dtype=amp)
        else:
            train_batch(model, optimizer, lr, hr, scale=info.scale, rule="paper", amp_dtype=amp)

    step()
    start = time.perf_counter()
    for _ in range(3):
        step()
    return (time.perf_counter() - start) / 3


def _curve(run: Path) -> list[tuple[float, int, float]]:
    """(training seconds, step, mean validation PSNR) from a run's log."""
    log = run / "log.jsonl"
    if not log.is_file():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [(e["seconds"], e["step"], e["psnr"]) for e in entries if e["kind"] == "validation" and "seconds" in e]


def _report(out: Path, per_step: dict[str, float] | None = None) -> None:
    """Table, CSV and figure. With ``per_step`` (seconds per step measured on a quiet machine), training time is
    steps × that, so runs that shared the CPU with other work are compared fairly; else the runs' own clocks."""
    rows = []
    curves = {}
    for name, *_ in CONFIGS:
        curve = _curve(out / name)
        if not curve:
            continue
        if per_step and name in per_step:
            curve = [(step * per_step[name], step, psnr) for _seconds, step, psnr in curve]
        curves[name] = curve
        for seconds, step, psnr in curve:
            rows.append({"config": name, "hours": round(seconds / 3600, 4), "step": step, "psnr": round(psnr, 4)})
    with (out / "schedules.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["config", "hours", "step", "psnr"])
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| configuration | schedule | precision | lr | steps | hours | best val PSNR (dB) | at hour |",
        "|" + "---|" * 8,
    ]
    for name, schedule, precision, rate in CONFIGS:
        if name not in curves:
            continue
        curve = curves[name]
        best = max(curve, key=lambda c: c[2])
        lines.append(
            f"| {name} | {schedule} | {precision} | {rate:g} | {curve[-1][1]} | {curve[-1][0] / 3600:.2f} | "
            f"{best[2]:.3f} | {best[0] / 3600:.2f} |"
        )
    (out / "schedules.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for name, curve in curves.items():
        axis.plot([c[0] / 3600 for c in curve], [c[2] for c in curve], marker="o", markersize=3, label=name)
    axis.set_xlabel("training time (hours, one CPU thread)" + (", steps × quiet s/step" if per_step else ""))
    axis.set_ylabel("validation PSNR (dB)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "schedules.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--n-feats", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--validate-minutes", type=float, default=2.0)
    parser.add_argument("--only", action="append", help="run only these configurations (repeatable)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--quiet-timing",
        action="store_true",
        help="time each configuration's steps now (on a quiet machine) and use that for the hours axis",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for name, schedule, precision, rate in CONFIGS:
            if args.only and name not in args.only:
                continue
            run = args.out / name
            if (run / "log.jsonl").is_file() and '"kind": "stop"' in (run / "log.jsonl").read_text():
                continue
            step_seconds = _seconds_per_step(args.store, schedule, precision, args.n_feats, args.threads)
            every = max(1, round(args.validate_minutes * 60 / step_seconds))
            print(f"{name}: {step_seconds:.2f} s/step, validating every {every} steps", flush=True)
            command = [
                sys.executable, "-c", "from dualsr_deploy.cli.main import app; app()",
                "train", str(args.store), "--out", str(run),
                "--n-feats", str(args.n_feats), "--n-blocks", "1", "--batch-size", str(args.batch_size),
                "--schedule", schedule, "--precision", precision, "--lr", str(rate),
                "--time-limit", str(args.minutes), "--validate-every", str(every),
            ]  # fmt: skip
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    per_step: dict[str, float] | None = None
    if args.quiet_timing:
        per_step = {
            name: _seconds_per_step(args.store, schedule, precision, args.n_feats, args.threads)
            for name, schedule, precision, _rate in CONFIGS
        }
        (args.out / "seconds_per_step.json").write_text(json.dumps(per_step, indent=1) + "\n")
    elif (args.out / "seconds_per_step.json").is_file():
        per_step = json.loads((args.out / "seconds_per_step.json").read_text())
    _report(args.out, per_step)


if __name__ == "__main__":
    main()
