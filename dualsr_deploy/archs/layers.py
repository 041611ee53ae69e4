"""Building blocks of the published CoarSR, with the published state-dict names.

Weight normalisation is written out (``weight_g``, ``weight_v``) rather than taken from
``torch.nn.utils.weight_norm``: that helper is deprecated, and its replacement
(``torch.nn.utils.parametrizations.weight_norm``) renames the parameters, which would break checkpoint
compatibility. The computation is the same: ``w = g · v / ‖v‖``, the norm over every dimension but the first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


def weight_norm_weight(weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    """``g · v / ‖v‖`` per output channel, the norm over all dimensions but dim 0 (as ``torch._weight_norm``)."""
    dims = tuple(range(1, weight_v.dim()))
    return weight_v * (weight_g / weight_v.norm(p=2, dim=dims, keepdim=True))


class WNConv(nn.Module):
    """A weight-normalised 2-D or 3-D convolution with ``weight_g``, ``weight_v`` and ``bias`` parameters."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> None:
        super().__init__()
        if len(kernel_size) not in (2, 3) or len(padding) != len(kernel_size):
            raise ValueError("kernel_size and padding must both have 2 or 3 entries")
        self.padding = padding
        weight_v = torch.empty(out_channels, in_channels, *kernel_size)
        # The initialisation of nn.Conv*d, then g = ‖v‖, as weight_norm() does on wrapping.
        nn.init.kaiming_uniform_(weight_v, a=math.sqrt(5))
        fan_in = in_channels * math.prod(kernel_size)
        bound = 1.0 / math.sqrt(fan_in)
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))
        dims = tuple(range(1, weight_v.dim()))
        self.weight_g = nn.Parameter(weight_v.norm(p=2, dim=dims, keepdim=True))
        self.weight_v = nn.Parameter(weight_v)

    def weight(self) -> torch.Tensor:
        return weight_norm_weight(self.weight_g, self.weight_v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.padding) == 2:
            return F.conv2d(x, self.weight(), self.bias, padding=self.padding)
        return F.conv3d(x, self.weight(), self.bias, padding=self.padding)


def wn_conv2d(in_channels: int, out_channels: int, kernel_size: int) -> WNConv:
    """The published ``wn(default_conv2d(...))``: square kernel, 'same' padding, bias."""
    return WNConv(in_channels, out_channels, (kernel_size, kernel_size), (kernel_size // 2, kernel_size // 2))


class ResBlock(nn.Module):
    """``x + [conv3×3, BatchNorm, ReLU, conv3×3, BatchNorm](x)``.

    The BatchNorm layers are there because the published code passes ``padding=1, dilation=1`` into the
    ``bias`` and ``bn`` parameters of its ResBlock; published checkpoints carry their running statistics.
    """

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            wn_conv2d(n_feats, n_feats, 3),
            nn.BatchNorm2d(n_feats),
            nn.ReLU(),
            wn_conv2d(n_feats, n_feats, 3),
            nn.BatchNorm2d(n_feats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualBody(nn.Module):
    """``y = blocks(x) + x`` with ``n_blocks`` ResBlocks, keys ``body.0.{k}.body.{m}``."""

    def __init__(self, n_feats: int, n_blocks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Sequential(*[ResBlock(n_feats) for _ in range(n_blocks)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class GroupFusion(nn.Module):
    """The published ``group`` module (``GFM_intra_*``): intra-group bodies, γ-weighted fusion, inter bodies."""

    def __init__(self, n_feats: int, n_blocks: int) -> None:
        super().__init__()
        f = n_feats
        self.left_one_body = ResidualBody(f, n_blocks)
        self.left_two_body = ResidualBody(f, n_blocks)
        self.left_three_body = ResidualBody(f, n_blocks)
        self.right_one_body = ResidualBody(f, n_blocks)
        self.right_two_body = ResidualBody(f, n_blocks)
        self.right_three_body = ResidualBody(f, n_blocks)
        self.fusion_one = nn.Sequential(wn_conv2d(3 * f, f, 1))
        self.fusion_two = nn.Sequential(wn_conv2d(3 * f, f, 1))
        self.fusion_three = nn.Sequential(wn_conv2d(3 * f, f, 1))
        self.gamma = nn.Parameter(torch.ones(3, 3))
        self.gamma_inter = nn.Parameter(torch.ones(3))

    def forward(self, g1: torch.Tensor, g2: torch.Tensor, g3: torch.Tensor) -> torch.Tensor:
        """Three ``(N, F, h, w)`` groups → their stack ``(N, F, 3, h, w)``."""
        a = (self.left_one_body(g1), self.left_two_body(g2), self.left_three_body(g3))
        gamma = self.gamma
        fused = [
            fusion(torch.cat([a[0] * gamma[j, 0], a[1] * gamma[j, 1], a[2] * gamma[j, 2]], 1))
            for j, fusion in enumerate((self.fusion_one, self.fusion_two, self.fusion_three))
        ]
        b1 = self.right_one_body(fused[0]) + g1
        b2 = self.right_two_body(fused[1]) + g2
        b3 = self.right_three_body(fused[2]) + g3
        gi = self.gamma_inter
        return torch.stack([b1 * gi[0], b2 * gi[1], b3 * gi[2]], 2)


class ThreeUnit(nn.Module):
    """``spatial_one(relu(spatial(t) + spectral(t)))`` with 3-D convolutions over the group axis."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        f = n_feats
        self.spatial = WNConv(f, f, (1, 3, 3), (0, 1, 1))
        self.spectral = WNConv(f, f, (3, 1, 1), (1, 0, 0))
        self.spatial_one = WNConv(f, f, (1, 3, 3), (0, 1, 1))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.spatial_one(torch.relu(self.spatial(t) + self.spectral(t)))


class InterUnit(nn.Module):
    """The published ``Unit`` (``GFM_inter_*``): ``t + threeunit(t)``, split back into the three groups."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.threeunit = ThreeUnit(n_feats)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.threeunit(t) + t
        return out[:, :, 0], out[:, :, 1], out[:, :, 2]


def upsampler(scale: int, n_feats: int) -> nn.Sequential:
    """The published ``Upsampler``: ``log2(s)`` × [conv F→4F, PixelShuffle(2)] for s = 2ⁿ, or conv F→9F,
    PixelShuffle(3) for s = 3."""
    layers: list[nn.Module] = []
    if scale >= 2 and scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [wn_conv2d(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [wn_conv2d(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"CoarSR supports scales 2, 3, 4, 8 (any power of two, or 3); got {scale}")
    return nn.Sequential(*layers)
