"""Time and peak memory of the fine stage (backproject) and the metrics (evaluate) on CPU or GPU.

    python benchmarks/fine_stage.py                      # 512×512×31 at ×4 (a CAVE scene), timings
    python benchmarks/fine_stage.py --height 1392 --width 1040 --repeats 1   # a large scene, peak memory

Peak memory on CPU is the process's peak resident set size (VmHWM, reset before each measurement, Linux) above
its resident size once the inputs existed, in units of one float32 copy of the HR cube. On CUDA it is torch's
peak allocation above the inputs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from dualsr_deploy import backproject, imresize, metrics
from dualsr_deploy.bench import status_bytes


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS and return that RSS."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return status_bytes("VmRSS")


def measure(name: str, fn: Callable[[], object], repeats: int, device: torch.device, cube_bytes: int) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _reset_peak_rss()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda" else status_bytes("VmHWM")) - base
    print(
        f"{name:12s} median {statistics.median(times):7.3f} s  min {min(times):7.3f} s  "
        f"peak +{peak / 2**20:8.1f} MiB (= {peak / cube_bytes:4.2f} float32 HR cubes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--bands", type=int, default=31)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    generator = torch.Generator(device=device).manual_seed(0)
    shape = (args.bands, args.height, args.width)
    hr = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    im_h = (hr + 0.02 * torch.randn(shape, generator=generator, device=device, dtype=dtype)).clamp(0, 1)
    im_l = imresize(hr, 0.5).clamp(0, 1)
    cube_bytes = hr.numel() * 4
    print(
        f"device={device} dtype={args.dtype} HR cube {shape} ({cube_bytes / 2**20:.0f} MiB float32), "
        f"threads={torch.get_num_threads()}, torch {torch.__version__}"
    )
    measure("backproject", lambda: backproject(im_h, im_l), args.repeats, device, cube_bytes)
    measure("evaluate", lambda: metrics.evaluate(im_h, hr, scale=args.scale), args.repeats, device, cube_bytes)


if __name__ == "__main__":
    main()
