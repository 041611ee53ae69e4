"""``dualsr_deploy.xarray.super_resolve`` in memory against Dask on a ``LocalCluster`` of worker processes.

    python benchmarks/xarray_dask.py                          # 512×512×224, ×2 coarse, 2 workers of 1 thread
    python benchmarks/xarray_dask.py --side 256 --stage dual --scale 4

The scene is smooth synthetic reflectance (``tests/interop/producers.smooth_spectra``). Prints wall time, the peak
resident memory of this process (in memory) and of each worker (Dask), and the largest difference between them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike getrusage's ru_maxrss, not inherited across exec, so a
    spawned Dask worker reports its own)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--bands", type=int, default=224)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--stage", default="coarse")
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import importlib

    import xarray as xr

    distributed: Any = importlib.import_module("dask.distributed")

    from dualsr_deploy.xarray import super_resolve
    from tests.interop.producers import smooth_spectra

    values = np.transpose(smooth_spectra(args.side, args.side, args.bands, seed=1), (2, 0, 1)).copy()
    da = xr.DataArray(values, dims=("band", "y", "x"), name="reflectance")
    size = f"{args.bands}×{args.side}×{args.side} float32 ({values.nbytes / 2**20:.0f} MiB)"
    print(f"scene {size}, ×{args.scale} {args.stage}")
    start = time.perf_counter()
    memory = super_resolve(da, scale=args.scale, stage=args.stage, precision="fp32").values
    seconds = time.perf_counter() - start
    print(f"| in memory (this process) | {seconds:.1f} s | peak RSS {peak_rss_mb():.0f} MiB |")
    with (
        distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # the scene loaded on the workers first, as data read with Dask is (not shipped inside every graph)
        chunked = da.chunk({"band": -1, "y": args.chunk, "x": args.chunk}).persist()
        before = client.run(peak_rss_mb)
        start = time.perf_counter()
        lazy = super_resolve(chunked, scale=args.scale, stage=args.stage, precision="fp32").compute()
        seconds = time.perf_counter() - start
        peaks = client.run(peak_rss_mb)
        print(f"worker peak RSS before the run: {', '.join(f'{v:.0f}' for v in before.values())} MiB")
    worst = float(np.nanmax(np.abs(lazy.values - memory)))
    per_worker = ", ".join(f"{v:.0f}" for v in peaks.values())
    print(
        f"| Dask, {args.workers} workers × 1 thread, chunks {args.chunk}² | {seconds:.1f} s | peak RSS per worker "
        f"{per_worker} MiB | max |Δ| vs in memory {worst:.2e} |"
    )


if __name__ == "__main__":
    main()
