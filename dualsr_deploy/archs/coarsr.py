"""CoarSR exactly as published: one band per call, recurrent state from band to band.

This module is the reference the fast cube model (:mod:`dualsr_deploy.archs.cube`) is checked against, and the
module training uses, because the published recipe steps the optimiser once per band.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from dualsr_deploy.archs.layers import GroupFusion, InterUnit, upsampler, wn_conv2d
from dualsr_deploy.archs.neighbours import NeighbourRule, band_neighbours, check_band_count

SUPPORTED_SCALES = (2, 3, 4, 8)


@dataclass(frozen=True)
class CoarSRConfig:
    """Architecture hyper-parameters. The paper uses ``n_feats=64, n_blocks=2``."""

    scale: int
    n_feats: int = 64
    n_blocks: int = 2

    def __post_init__(self) -> None:
        if self.scale not in SUPPORTED_SCALES:
            raise ValueError(f"CoarSR supports scales {', '.join(map(str, SUPPORTED_SCALES))}; got {self.scale}")
        if self.n_feats < 1 or self.n_blocks < 1:
            raise ValueError(f"n_feats and n_blocks must be positive; got {self.n_feats}, {self.n_blocks}")


def bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The skip input: PIL-style bicubic upsampling of ``(..., h, w)`` to ``(..., s·h, s·w)``.

    Equals ``scipy.misc.imresize(..., 'bicubic', mode='F')`` as the published code used (to ~1e-7).
    """
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-2], shape[-1])
    up = F.interpolate(flat, scale_factor=scale, mode="bicubic", antialias=True, align_corners=False)
    return up.reshape(*shape[:-2], up.shape[-2], up.shape[-1])


class CoarSR(nn.Module):
    """The published ``pre_Net`` with identical state-dict names.

    ``forward(band_index, band, bicubic, left, right, state)`` keeps the published per-band call:

    - ``band``: ``(N, h, w)``, the LR band ``i``;
    - ``bicubic``: ``(N, s·h, s·w)``, its bicubic upsampling;
    - ``left``, ``right``: ``(N, 2, h, w)``, the neighbour pairs ``(l0, l1)`` and ``(r0, r1)``;
    - ``state``: ``(N, F, h, w)`` from band ``i − 1``, ignored for band 0.

    Returns the SR band ``(N, s·h, s·w)`` (unclipped) and the new state.
    """

    def __init__(self, config: CoarSRConfig) -> None:
        super().__init__()
        self.config = config
        f = config.n_feats
        self.gamma_rnn = nn.Parameter(torch.ones(2))
        self.head_group_one = wn_conv2d(1, f, 3)
        self.head_group_two = wn_conv2d(3, f, 3)
        self.head_group_three = wn_conv2d(3, f, 3)
        self.GFM_intra_one = GroupFusion(f, config.n_blocks)
        self.GFM_intra_two = GroupFusion(f, config.n_blocks)
        self.GFM_inter_one = InterUnit(f)
        self.GFM_inter_two = InterUnit(f)
        self.tail = nn.Sequential(upsampler(config.scale, f), wn_conv2d(f, 1, 3))
        self.rnn_reduceD = nn.Sequential(wn_conv2d(2 * f, f, 1))
        self.conv = nn.Sequential(wn_conv2d(f, f, 3))
        self.last_reduceD = nn.Sequential(wn_conv2d(3 * f, f, 1))

    @property
    def scale(self) -> int:
        return self.config.scale

    def features(
        self,
        band: torch.Tensor,
        left: torch.Tensor,
        right: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The stateless body: ``(out, skip)``, both ``(N, F, h, w)``, before the recurrent merge."""
        x = band.unsqueeze(1)
        g1 = self.head_group_one(x)
        g2 = self.head_group_two(torch.cat([left[:, 1:2], x, right[:, 0:1]], 1))
        g3 = self.head_group_three(torch.cat([left[:, 0:1], x, right[:, 1:2]], 1))
        skip = g1
        res = (g1, g2, g3)
        for intra, inter in (
            (self.GFM_intra_one, self.GFM_inter_one),
            (self.GFM_intra_two, self.GFM_inter_two),
        ):
            g1, g2, g3 = inter(intra(g1, g2, g3))
            g1, g2, g3 = g1 + res[0], g2 + res[1], g3 + res[2]
        out = self.conv(self.last_reduceD(torch.cat([g1, g2, g3], 1))) + skip
        return out, skip

    def forward(
        self,
        band_index: int,
        band: torch.Tensor,
        bicubic: torch.Tensor,
        left: torch.Tensor,
        right: torch.Tensor,
        state: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, skip = self.features(band, left, right)
        if band_index != 0:
            if state is None:
                raise ValueError(f"band {band_index} needs the state of band {band_index - 1}")
            out = self.rnn_reduceD(torch.cat([self.gamma_rnn[0] * out, self.gamma_rnn[1] * state], 1))
        state = out
        sr = self.tail(out + skip).squeeze(1) + bicubic
        return sr, state


def per_band_loop(
    model: CoarSR,
    lr: torch.Tensor,
    rule: NeighbourRule,
    bicubic: torch.Tensor | None = None,
) -> torch.Tensor:
    """Super-resolve ``lr: (B, C, h, w)`` band by band, as the published test loop does.

    ``rule`` picks the neighbours (``reference`` reproduces the published loop's own behaviour). ``bicubic``
    defaults to :func:`bicubic_upsample` of ``lr``. Returns ``(B, C, s·h, s·w)``, unclipped.
    """
    if lr.dim() != 4:
        raise ValueError(f"lr must be (B, C, h, w); got shape {tuple(lr.shape)}")
    bands = lr.shape[1]
    check_band_count(bands)
    if bicubic is None:
        bicubic = bicubic_upsample(lr, model.scale)
    outputs = []
    state: torch.Tensor | None = None
    for i in range(bands):
        (l0, l1), (r0, r1) = band_neighbours(i, bands, rule)
        left = lr[:, [l0, l1]]
        right = lr[:, [r0, r1]]
        sr, state = model(i, lr[:, i], bicubic[:, i], left, right, state)
        outputs.append(sr)
    return torch.stack(outputs, 1)
