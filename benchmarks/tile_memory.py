"""How much memory one backend call takes per LR window pixel and band, measured per backend × precision × scale:
what ``dualsr infer`` sizes its tiles from (``dualsr_deploy/infer/memory.py``), so that a tile's call stays within
its share of ``--memory-budget``.

    python benchmarks/tile_memory.py                       # torch/onnx/openvino × fp32/bf16 × ×2/×4, 285 bands
    python benchmarks/tile_memory.py --backends torch --bands 31 --sides 24,56

Each configuration runs in a fresh process with the shipped airborne weights (cave's at ×4 where airborne ships
none): the backend is opened (its graph or IR exported first, in a parent process, so that export's own memory is
not counted) and called once on a small window, then once on each larger one; the growth of the process's peak
resident memory (``ru_maxrss``) between windows, divided by the growth of window pixels × bands, is the slope.
The peak after the first call less the process before opening is the constant. Prints a Markdown table and, with
``--json``, writes every number.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CHILD = r"""
import json, resource, sys
from pathlib import Path
import torch
from dualsr_deploy.infer.options import BackendSpec
from dualsr_deploy.infer.pool import BackendPool
from dualsr_deploy.infer.tiling import receptive_radius
backend, precision, scale, bands, engines = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
sides = [int(s) for s in sys.argv[6].split(",") if s]
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
spec = BackendSpec.for_run(backend, scale=scale, stage="coarse", device="cpu", precision=precision,
                           artefacts_dir=Path(engines), weights="airborne" if scale == 2 else "cave")
pool = BackendPool(spec)
pool.prepare([(scale, bands)])
if not sides:  # the export pass: artefacts written for the measuring process, which finds them made
    raise SystemExit(0)
before = peak()
net = pool.backend(scale, bands)
halo = receptive_radius(pool.model(scale).config)
rows = []
for side in sides:
    window = side + 2 * halo
    lr = torch.rand(1, bands, window, window, generator=torch.Generator().manual_seed(0))
    net.run(lr)
    rows.append({"side": side, "window": window, "peak": peak()})
print(json.dumps({"before": before, "rows": rows, "halo": halo}))
"""


def measure(backend: str, precision: str, scale: int, bands: int, engines: Path, sides: list[int]) -> dict[str, Any]:
    argv = [backend, precision, str(scale), str(bands), str(engines), ",".join(map(str, sides))]
    subprocess.run([sys.executable, "-c", CHILD, *argv[:5], ""], capture_output=True, timeout=3600, check=False)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, timeout=3600, check=False
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    found = json.loads(done.stdout.strip().splitlines()[-1])
    rows = found["rows"]
    slopes = [
        (b["peak"] - a["peak"]) / ((b["window"] ** 2 - a["window"] ** 2) * bands) for a, b in itertools.pairwise(rows)
    ]
    constant = rows[0]["peak"] - found["before"] - max(slopes[-1], 0) * rows[0]["window"] ** 2 * bands
    return {**found, "slope": slopes[-1], "slopes": slopes, "constant": constant}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="torch,onnx,openvino")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--bands", type=int, default=285)
    parser.add_argument("--sides", default="16,48,80", help="LR tile cores, smallest first")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from dualsr_deploy.backends import backend_kind
    from dualsr_deploy.runtimes import cpu_native_bf16

    sides = [int(s) for s in args.sides.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="dualsr-tile-memory-") as scratch:
        for backend in args.backends.split(","):
            for precision in args.precisions.split(","):
                if precision not in backend_kind(backend).precisions:
                    continue
                if precision.startswith("bf16") and not cpu_native_bf16():
                    continue
                for scale in map(int, args.scales.split(",")):
                    found = measure(backend, precision, scale, args.bands, Path(scratch), sides)
                    results.append({"backend": backend, "precision": precision, "scale": scale, **found})
                    if "error" in found:
                        print(f"{backend} {precision} ×{scale}: {found['error']}", flush=True)
                        continue
                    print(
                        f"{backend} {precision} ×{scale}: {found['slope']:.0f} B per window pixel and band "
                        f"(slopes {', '.join(f'{s:.0f}' for s in found['slopes'])}), constant "
                        f"{found['constant'] / 2**20:.0f} MiB",
                        flush=True,
                    )
    print(f"\n| backend | precision | scale | bytes per window pixel × band | constant MiB |  ({args.bands} bands)")
    print("|---|---|---|---:|---:|")
    for r in results:
        if "error" not in r:
            mib = r["constant"] / 2**20
            print(f"| {r['backend']} | {r['precision']} | ×{r['scale']} | {r['slope']:.0f} | {mib:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=1))


if __name__ == "__main__":
    main()
