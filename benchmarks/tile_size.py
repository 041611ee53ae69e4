"""Which tile side makes a backend's network fastest per output pixel: each side's window (the tile's core plus the
receptive-field halo on every side, as an interior tile of ``dualsr infer`` runs) timed through the backend as a run
opens it, the sides interleaved (forward, then backward) so that a machine's drift falls on all of them alike.

    python benchmarks/tile_size.py                                    # torch fp32, airborne ×2, 8 bands
    python benchmarks/tile_size.py --scale 4 --weights cave --sides 96,128,160 --repeats 7

A larger core pays less halo (a 128 core runs a 160 window at ×2: 1.56× the core's pixels; a 256 core, 1.27×), if a
window pixel costs no more in a larger window (caches; before ``dualsr_deploy/_malloc.py``, torch's page faults). Per
core pixel and band is what a scene's network time scales with; per window pixel shows the window's own effect. The
bands only set the work per call (the torch model runs a plane at a time on a CPU). ``dualsr infer`` takes
:data:`dualsr_deploy.infer.options.AUTO_TILE` (128) where the budget allows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--weights", default="airborne")
    parser.add_argument("--bands", type=int, default=8)
    parser.add_argument("--sides", default="96,128,160,192,256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engines", type=Path, default=Path("engines"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    # the package before torch, as a run imports them: its thread wait policy is chosen only before torch loads
    from dualsr_deploy.infer.options import BackendSpec
    from dualsr_deploy.infer.pool import BackendPool
    from dualsr_deploy.infer.tiling import receptive_radius

    spec = BackendSpec.for_run(
        args.backend,
        scale=args.scale,
        stage="coarse",
        device="cpu",
        precision=args.precision,
        artefacts_dir=args.engines,
        weights=args.weights,
    )
    pool = BackendPool(spec)
    pool.prepare([(args.scale, args.bands)])
    net = pool.backend(args.scale, args.bands)
    halo = receptive_radius(pool.model(args.scale).config)
    sides = [int(s) for s in args.sides.split(",")]
    import torch

    inputs = {
        s: torch.rand(1, args.bands, s + 2 * halo, s + 2 * halo, generator=torch.Generator().manual_seed(s))
        for s in sides
    }
    times: dict[int, list[float]] = {s: [] for s in sides}
    for side in sides:  # warm-up: first calls of each shape
        net.residual(inputs[side])
    for repeat in range(args.repeats):
        for side in sides if repeat % 2 == 0 else sides[::-1]:
            start = time.perf_counter()
            net.residual(inputs[side])
            times[side].append(time.perf_counter() - start)

    rows = []
    for side in sides:
        window = side + 2 * halo
        median, best = statistics.median(times[side]), min(times[side])
        rows.append(
            {
                "side": side,
                "window": window,
                "median_s": median,
                "best_s": best,
                "us_per_core_px": 1e6 * median / (side * side * args.bands),
                "us_per_window_px": 1e6 * median / (window * window * args.bands),
            }
        )
    base = next((r for r in rows if r["side"] == 128), rows[0])
    what = f"{net.capabilities.name} ×{args.scale} {args.weights}, {args.bands} bands, halo {halo}"
    print(f"{what}, median of {args.repeats}")
    print("| core | window | µs per core px·band | µs per window px·band | vs 128 |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        speed = base["us_per_core_px"] / r["us_per_core_px"]
        cells = [r["side"], r["window"], f"{r['us_per_core_px']:.2f}", f"{r['us_per_window_px']:.2f}", f"{speed:.2f}×"]
        print("| " + " | ".join(map(str, cells)) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
