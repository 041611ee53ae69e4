"""Training throughput: one batch of the band-by-band schedule (C optimiser updates) for a few model sizes.

    python benchmarks/train_step.py                          # CPU, ×4, batch 16 of 16×16 LR patches, 31 bands
    python benchmarks/train_step.py --device cuda --batch 64 --patch 32 --sizes 64:2

Random data and weights (the speed does not depend on their values). Reports the median of --repeats timed
batches after one warm-up batch, per batch and per band update, and what that means for one epoch of a store.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dualsr_deploy.archs.coarsr import CoarSR, CoarSRConfig
from dualsr_deploy.train.schedule import autocast_dtype, train_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--bands", type=int, default=31)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=16, help="LR patch side")
    parser.add_argument("--sizes", default="16:1,32:1,64:2", help="n_feats:n_blocks, comma-separated")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=9280, help="samples per epoch (CAVE ×4, 16-pixel patches)")
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = autocast_dtype(args.precision, device)
    print(f"device {device}, threads {torch.get_num_threads()}, ×{args.scale}, {args.bands} bands, "
          f"batch {args.batch} of {args.patch}×{args.patch} LR, precision {args.precision}")  # fmt: skip
    for size in args.sizes.split(","):
        n_feats, n_blocks = (int(v) for v in size.split(":"))
        torch.manual_seed(0)
        model = CoarSR(CoarSRConfig(args.scale, n_feats, n_blocks)).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        lr = torch.rand(args.batch, args.bands, args.patch, args.patch, device=device)
        hr = torch.rand(args.batch, args.bands, args.patch * args.scale, args.patch * args.scale, device=device)
        times = []
        for repeat in range(args.repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            train_batch(model, optimizer, lr, hr, scale=args.scale, rule="paper", amp_dtype=amp)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if repeat:
                times.append(time.perf_counter() - start)
        batch = statistics.median(times)
        params = sum(p.numel() for p in model.parameters())
        epoch_min = batch * (args.samples // args.batch) / 60
        print(f"n_feats {n_feats:3d} n_blocks {n_blocks}: {params:>9,} parameters, {batch:7.2f} s/batch, "
              f"{1000 * batch / args.bands:7.1f} ms/band update, {epoch_min:7.1f} min/epoch")  # fmt: skip


if __name__ == "__main__":
    main()
