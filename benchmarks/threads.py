"""How many intra-op threads survive a shared machine: one network call (the shipped airborne ×2 CoarSR on a batch
of LR tiles of an EMIT-like band count) timed with 1 and N threads, on a quiet machine and beside busy neighbours
(processes spinning on the cores), with each OpenMP wait policy asked for: ``default`` (libgomp spins ~300k
iterations before sleeping), ``PASSIVE`` (``OMP_WAIT_POLICY=PASSIVE``: sleep at once), ``ACTIVE``, or ``spin:N``
(``GOMP_SPINCOUNT=N``, the policy unset: a bounded spin), or ``auto`` (what the package chooses when imported
first, ``dualsr_deploy/_waiting.py``). Each configuration runs in a fresh process (the policy is
read when OpenMP starts).

    python benchmarks/threads.py [--bands 224] [--tile 64] [--batch 2] [--repeats 3] [--precision bf16]
        [--policies default,PASSIVE,spin:10000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHILD = r"""
import json, os, statistics, sys, time
import dualsr_deploy  # before torch: with no policy in the environment, the package chooses one (policy auto)
import torch
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.backends import create
from dualsr_deploy.checkpoint import read_checkpoint
from dualsr_deploy.weights import shipped_weights
bands, tile, batch, repeats, threads = map(int, sys.argv[1:6])
precision = sys.argv[6]
torch.set_num_threads(threads)
network, info = read_checkpoint(shipped_weights(2, "airborne"))
lr = torch.rand(batch, bands, tile, tile, generator=torch.Generator().manual_seed(0))
with create("torch", core=fold_coarsr(network, info.neighbour_rule), precision=precision) as backend:
    backend.run(lr)
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); backend.run(lr); times.append(time.perf_counter() - t)
print(json.dumps({"median": statistics.median(times), "times": times, "threads": torch.get_num_threads(),
                  "chosen": os.environ.get("DUALSR_WAIT_POLICY")}))
"""


def busy(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` neighbours, each spinning one core (as another user's job would)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def run(args: argparse.Namespace, threads: int, policy: str | None, neighbours: int) -> dict[str, Any]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(name, None)
    if policy == "default":  # libgomp's own when OMP_WAIT_POLICY is unset (set here so the package keeps it)
        env["GOMP_SPINCOUNT"] = "300000"
    elif policy and policy.startswith("spin:"):
        env["GOMP_SPINCOUNT"] = policy.removeprefix("spin:")
    elif policy and policy != "auto":
        env["OMP_WAIT_POLICY"] = policy
    spinning = busy(neighbours)
    try:
        time.sleep(0.5 if neighbours else 0)
        argv = [str(v) for v in (args.bands, args.tile, args.batch, args.repeats, threads, args.precision)]
        done = subprocess.run(
            [sys.executable, "-c", CHILD, *argv], env=env, capture_output=True, text=True, check=True, timeout=3600
        )
    finally:
        for process in spinning:
            process.kill()
            process.wait()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"threads": threads, "policy": policy or "default", "neighbours": neighbours, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bands", type=int, default=224)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--neighbours", type=int, default=2)
    parser.add_argument("--precision", default="fp32", help="fp32 or bf16 (torch)")
    parser.add_argument("--policies", default="default,PASSIVE", help="comma-separated: default, PASSIVE, spin:N")
    parser.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1 and all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cpus})
    rows: list[dict[str, Any]] = []
    for neighbours in (0, args.neighbours):
        for policy in args.policies.split(","):
            for threads in thread_counts:
                row = run(args, threads, policy, neighbours)
                rows.append(row)
                chosen = f" [{row['chosen']}]" if policy == "auto" else ""
                print(
                    f"threads {threads}  policy {row['policy']:<8}{chosen} neighbours {neighbours}: "
                    f"{row['median']:.2f} s (runs {', '.join(f'{t:.2f}' for t in row['times'])})",
                    flush=True,
                )
    quiet = {(r["threads"], r["policy"]): r["median"] for r in rows if r["neighbours"] == 0}
    print("\n| threads | OMP wait policy | quiet s | busy s | busy / quiet | busy / best quiet |")
    print("|---|---|---|---|---|---|")
    best = min(quiet.values())
    for r in rows:
        if r["neighbours"]:
            q = quiet[(r["threads"], r["policy"])]
            print(
                f"| {r['threads']} | {r['policy']} | {q:.2f} | {r['median']:.2f} | {r['median'] / q:.2f}× | "
                f"{r['median'] / best:.2f}× |"
            )
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "cpus": cpus, "rows": rows}, indent=1)
        )
    print(f"\n{cpus} usable CPUs; load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
