"""Cube model (folded, band-parallel) against the published per-band eager loop.

    python benchmarks/cube_vs_loop.py                    # 31 bands, 128×128 LR, ×4, n_feats 64 (issue 2)
    python benchmarks/cube_vs_loop.py --device cuda --planes all

Random weights (the speed does not depend on their values). Reports the median of --repeats timed runs after one
warm-up run, and the max abs difference between the two outputs.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch

from dualsr_deploy.archs.coarsr import CoarSR, CoarSRConfig, per_band_loop
from dualsr_deploy.archs.cube import CoarSRCube
from dualsr_deploy.archs.fold import fold_coarsr


def timed(fn: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="LR tile side (pixels)")
    parser.add_argument("--bands", type=int, default=31)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--feats", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--planes", default="1,2,4,all", help="planes per call to try (pixels_per_call = planes·h·w), comma separated"
    )
    parser.add_argument("--layouts", default="nchw,nhwc", help="activation layouts to try, comma separated")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = CoarSR(CoarSRConfig(args.scale, args.feats, 2)).eval().to(device)
    lr = torch.rand(1, args.bands, args.size, args.size, device=device)
    print(
        f"device={device} threads={torch.get_num_threads()} lr={tuple(lr.shape)} ×{args.scale} "
        f"n_feats={args.feats} torch={torch.__version__}"
    )
    with torch.inference_mode():
        loop_time, loop_out = timed(lambda: per_band_loop(model, lr, "paper"), args.repeats, device)
        print(f"per-band eager loop: {loop_time:8.3f} s", flush=True)
        for layout in args.layouts.split(","):
            core = fold_coarsr(model.cpu(), "paper").use_channels_last(layout == "nhwc")
            cube = CoarSRCube(core).to(device)
            for text in args.planes.split(","):
                cube.pixels_per_call = None if text == "all" else int(text) * args.size * args.size
                cube_time, cube_out = timed(functools.partial(cube, lr), args.repeats, device)
                error = (cube_out - loop_out).abs().max().item()
                print(
                    f"cube {layout}, planes per call={text:>4}: {cube_time:8.3f} s  "
                    f"speed-up ×{loop_time / cube_time:5.2f}  max|Δ|={error:.2e}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
