"""Grow a trained CoarSR into a larger one that computes the same function (``dualsr train --init`` with a smaller
model than the run asks for), so that a larger model starts where a smaller one got to instead of from scratch.

- **Wider** (``n_feats`` f → F): every old weight is copied to the same output and input channels of the new
  layer; the weights that read the *new* channels are zero, so the old channels compute exactly what they did and
  the new ones are not yet read (they are, as training moves those zeros). Concatenated inputs (the fusion and
  reduction 1×1 convolutions read ``k`` groups of f channels) map group ``j``'s channel ``c`` from ``j·f + c`` to
  ``j·F + c``; pixel-shuffle outputs (``c·r² + i``) keep their indices. Weight normalisation is unaffected: a
  row's norm gains only zeros.
- **Deeper** (``n_blocks`` b → B): each residual body gains ResBlocks whose last BatchNorm has weight and bias 0,
  so they start as the identity.

:func:`grow` checks the result against the small model on a random cube before returning it.
"""

from __future__ import annotations

import torch

from dualsr_deploy.archs.coarsr import CoarSR, CoarSRConfig
from dualsr_deploy.errors import TrainError

# 1×1 convolutions whose input is a concatenation of groups of n_feats channels (their group count is in_ch / f)
_CONCAT_INPUTS = ("fusion_one", "fusion_two", "fusion_three", "rnn_reduceD", "last_reduceD")


def _index(size_old: int, f_old: int, f_new: int, grouped: bool) -> torch.Tensor:
    """Where each of ``size_old`` old channels goes in the new layer."""
    old = torch.arange(size_old)
    if grouped and size_old % f_old == 0 and size_old > f_old:
        return (old // f_old) * f_new + old % f_old
    return old


def grow(small: CoarSR, config: CoarSRConfig) -> CoarSR:
    """A ``config``-sized CoarSR computing what ``small`` computes (see the module docstring)."""
    old = small.config
    if config.scale != old.scale or config.n_feats < old.n_feats or config.n_blocks < old.n_blocks:
        raise TrainError(
            f"cannot grow CoarSR(scale={old.scale}, n_feats={old.n_feats}, n_blocks={old.n_blocks}) into "
            f"CoarSR(scale={config.scale}, n_feats={config.n_feats}, n_blocks={config.n_blocks}): the scale must "
            "match and the features and blocks may only grow"
        )
    big = CoarSR(config)
    f, new_f = old.n_feats, config.n_feats
    source = small.state_dict()
    with torch.no_grad():
        for name, target in big.state_dict().items():
            if name not in source:  # a block the small model lacks: start it as the identity
                if name.endswith(("body.4.weight", "body.4.bias")):
                    target.zero_()
                continue
            value = source[name]
            if value.dim() == 0 or value.shape == target.shape:
                target.copy_(value)
                continue
            grouped = any(f"{key}." in name for key in _CONCAT_INPUTS)
            if name.endswith("weight_v"):  # old rows read the old columns only; new rows keep their random init
                rows = _index(value.shape[0], f, new_f, False)
                columns = _index(value.shape[1], f, new_f, grouped)
                target[rows] = 0
                target[rows.unsqueeze(1), columns.unsqueeze(0)] = value
            else:  # weight_g, biases, BatchNorm vectors: per output channel
                target[_index(value.shape[0], f, new_f, False)] = value
    _check(small, big)
    return big


def _check(small: CoarSR, big: CoarSR) -> None:
    """The grown model's output on a random 6-band cube equals the small one's (eval mode, float64)."""
    from dualsr_deploy.archs.coarsr import per_band_loop

    generator = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 6, 8, 8, generator=generator, dtype=torch.float64)
    modes = small.training, big.training
    small.eval(), big.eval()
    try:
        with torch.no_grad():
            a = per_band_loop(small.double(), lr, "paper")
            b = per_band_loop(big.double(), lr, "paper")
    finally:
        small.float(), big.float()
        small.train(modes[0]), big.train(modes[1])
    if not torch.allclose(a, b, atol=1e-9):
        raise TrainError(f"growing CoarSR changed its output (max difference {(a - b).abs().max().item():.2e})")


__all__ = ["grow"]
