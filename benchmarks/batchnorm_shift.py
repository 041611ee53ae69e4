"""How much of a fine-tune's first loss is BatchNorm statistics alone: weights fixed, only running statistics move.

    python benchmarks/batchnorm_shift.py STORE.h5 WEIGHTS.safetensors [--batches 60] [--threads 2]

Scores WEIGHTS on the store's held-out scenes, then runs training-mode forward passes (no gradient, no optimiser:
the weights never change) over random batches of the store's training patches, which is all a training step does
to BatchNorm's running mean and variance, and scores again after 1, 10 and ``--batches`` batches. A drop here is
what ``dualsr train --batch-norm frozen`` avoids when fine-tuning on other data.
"""

from __future__ import annotations

import argparse

import torch

from dualsr_deploy.archs.coarsr import bicubic_upsample
from dualsr_deploy.checkpoint import read_checkpoint
from dualsr_deploy.data.patches import PatchDataset
from dualsr_deploy.train.schedule import BandParallel
from dualsr_deploy.train.validate import validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    parser.add_argument("weights")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, info = read_checkpoint(args.weights)
    dataset = PatchDataset(args.store)
    scenes = list(dataset.validation())
    device = torch.device("cpu")
    rule = info.neighbour_rule

    def score(label: str) -> None:
        result = validate(model, scenes, rule=rule, device=device)
        per_scene = ", ".join(f"{s.name} {s.model['psnr']:.3f}" for s in result.scenes)
        print(f"{label:<32} mean PSNR {result.summary()['psnr']:.3f} dB  ({per_scene})", flush=True)

    score("weights as given")
    network = BandParallel(model, rule)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))
    model.train()
    with torch.no_grad():
        for batch in range(args.batches):
            indices = order[batch * args.batch_size : (batch + 1) * args.batch_size].tolist()
            lr = torch.stack([dataset[i][0] for i in indices])
            network(lr, bicubic_upsample(lr, info.scale))
            if batch + 1 in (1, 10, args.batches):
                score(f"after {batch + 1} batch(es) of statistics")
                model.train()
    dataset.close()


if __name__ == "__main__":
    main()
