"""Small builders for tests: CoarSR models whose every parameter and statistic is away from its default, and a
resumed training run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dualsr_deploy.archs.coarsr import CoarSR, CoarSRConfig

if TYPE_CHECKING:
    from dualsr_deploy.train import TrainConfig, TrainResult


def random_coarsr(scale: int, n_feats: int = 8, n_blocks: int = 1, seed: int = 0) -> CoarSR:
    """A CoarSR in eval mode with random weights, gains, γ scalars and BatchNorm statistics.

    Defaults (γ = 1, BatchNorm identity, g = ‖v‖) would let a folding bug that drops one of them go unseen.
    """
    generator = torch.Generator().manual_seed(seed)
    model = CoarSR(CoarSRConfig(scale, n_feats, n_blocks))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight_g") or "gamma" in name:
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
            else:
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
    return model.eval()


def resume(store: Path, run_dir: Path, config: TrainConfig, *given: str) -> TrainResult:
    """Continue the run in ``run_dir`` from its ``last.pt`` with ``config``, ``given`` naming the options passed
    again (``max_steps`` always)."""
    from dualsr_deploy.train import train

    return train(
        store,
        run_dir,
        config,
        resume=run_dir / "last.pt",
        given=frozenset({"max_steps", *given}),
        tensorboard=False,
    )
