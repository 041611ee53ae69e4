"""Fold a trained :class:`CoarSR` into the plain 2-D convolutions of :class:`FoldedCoarSR`.

What training needed and inference does not is folded away (DESIGN.md, "the band-parallel form"):

- weight norm → plain weights (``g · v / ‖v‖``);
- BatchNorm (eval statistics) → the conv before it;
- ``gamma`` (3×3) and ``gamma_rnn`` → the 1×1 convs that follow them;
- the three group branches → one grouped conv (``groups=3``) on the channel stack ``[g1, g2, g3]``;
- the 3-D unit → 2-D convs: the (1, 3, 3) kernels are a grouped 3×3 conv with the kernel repeated per group, the
  (3, 1, 1) kernel over the group axis (zero padded) is a block-tridiagonal 1×1 conv.

All folding arithmetic runs in float64 and is cast once at the end, so folding adds no rounding of its own
beyond the final cast.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from dualsr_deploy.archs.coarsr import CoarSR
from dualsr_deploy.archs.cube import FoldedCoarSR, FoldedRound, GroupedResBlock
from dualsr_deploy.archs.layers import GroupFusion, InterUnit, ResBlock, ResidualBody, WNConv
from dualsr_deploy.archs.neighbours import NeighbourRule

Tensor = torch.Tensor


def _wn(conv: WNConv) -> tuple[Tensor, Tensor]:
    v = conv.weight_v.detach().double()
    g = conv.weight_g.detach().double()
    dims = tuple(range(1, v.dim()))
    return v * (g / v.norm(p=2, dim=dims, keepdim=True)), conv.bias.detach().double()


def _bn(conv: WNConv, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    weight, bias = _wn(conv)
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm layer without running statistics")
    inv_std = 1.0 / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    scale = bn.weight.detach().double() * inv_std if bn.affine else inv_std
    shift = bn.bias.detach().double() if bn.affine else torch.zeros_like(scale)
    weight = weight * scale.view(-1, 1, 1, 1)
    bias = (bias - bn.running_mean.detach().double()) * scale + shift
    return weight, bias


def _set(conv: nn.Conv2d, weight: Tensor, bias: Tensor | None) -> None:
    if conv.weight.shape != weight.shape:
        raise ValueError(f"folded weight {tuple(weight.shape)} does not fit conv {tuple(conv.weight.shape)}")
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            if conv.bias is None:
                raise ValueError("folded bias for a conv without bias")
            conv.bias.copy_(bias)


def _resblock(block: ResBlock) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    body = block.body
    w1, b1 = _bn(body[0], body[1])  # type: ignore[arg-type]
    w2, b2 = _bn(body[3], body[4])  # type: ignore[arg-type]
    return w1, b1, w2, b2


def _grouped_bodies(folded: nn.ModuleList, bodies: tuple[ResidualBody, ResidualBody, ResidualBody]) -> None:
    """Stack the three branch bodies of one side into the grouped residual blocks of ``folded``."""
    per_branch = [[_resblock(cast(ResBlock, b)) for b in cast(nn.Sequential, body.body[0])] for body in bodies]
    for k, module in enumerate(folded):
        target = cast(GroupedResBlock, module)
        parts = [per_branch[branch][k] for branch in range(3)]
        _set(target.conv1, torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
        _set(target.conv2, torch.cat([p[2] for p in parts]), torch.cat([p[3] for p in parts]))


def _fusion(group: GroupFusion) -> tuple[Tensor, Tensor]:
    f = cast(WNConv, group.fusion_one[0]).weight_v.shape[0]
    gamma = group.gamma.detach().double()
    weights, biases = [], []
    for j, fusion in enumerate((group.fusion_one, group.fusion_two, group.fusion_three)):
        w, b = _wn(fusion[0])  # type: ignore[arg-type]
        # fusion_j(cat(γ[j,0]·a1, γ[j,1]·a2, γ[j,2]·a3)): scale the input-channel blocks of its weight.
        scale = gamma[j].repeat_interleave(f).view(1, -1, 1, 1)
        weights.append(w * scale)
        biases.append(b)
    return torch.cat(weights), torch.cat(biases)


def _three_unit(unit: InterUnit) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    tu = unit.threeunit
    ws, bs = _wn(tu.spatial)
    wt, bt = _wn(tu.spectral)
    wo, bo = _wn(tu.spatial_one)
    f = ws.shape[0]
    spatial = ws[:, :, 0].repeat(3, 1, 1, 1)
    spatial_one = wo[:, :, 0].repeat(3, 1, 1, 1)
    # spectral(t)_k = Σ_d W_d · t_{k+d−1} over the zero-padded group axis: block (k, m) holds W_{m−k+1}.
    spectral = torch.zeros(3 * f, 3 * f, 1, 1, dtype=torch.float64)
    for k in range(3):
        for m in range(3):
            d = m - k + 1
            if 0 <= d <= 2:
                spectral[k * f : (k + 1) * f, m * f : (m + 1) * f] = wt[:, :, d]
    return spatial, bs.repeat(3), spectral, bt.repeat(3), spatial_one, bo.repeat(3)


def fold_coarsr(model: CoarSR, rule: NeighbourRule, dtype: torch.dtype = torch.float32) -> FoldedCoarSR:
    """Return the folded, export-safe equivalent of ``model`` with neighbour ``rule``, in ``dtype``, eval mode,
    without gradients.

    The result computes the residual ``SR − bicubic`` for a whole cube; see :class:`FoldedCoarSR`.
    """
    cfg = model.config
    f = cfg.n_feats
    folded = FoldedCoarSR(cfg, rule).double()

    w1, b1 = _wn(model.head_group_one)
    w2, b2 = _wn(model.head_group_two)
    w3, b3 = _wn(model.head_group_three)
    # Input planes are ordered (x, l0, l1, r0, r1); head two reads [l1, x, r0], head three [l0, x, r1].
    head = torch.zeros(3 * f, 5, 3, 3, dtype=torch.float64)
    head[:f, 0] = w1[:, 0]
    head[f : 2 * f, 2], head[f : 2 * f, 0], head[f : 2 * f, 3] = w2[:, 0], w2[:, 1], w2[:, 2]
    head[2 * f :, 1], head[2 * f :, 0], head[2 * f :, 4] = w3[:, 0], w3[:, 1], w3[:, 2]
    _set(folded.head, head, torch.cat([b1, b2, b3]))

    pairs = ((model.GFM_intra_one, model.GFM_inter_one), (model.GFM_intra_two, model.GFM_inter_two))
    for module, (intra, inter) in zip(folded.rounds, pairs, strict=True):
        target = cast(FoldedRound, module)
        _grouped_bodies(target.left, (intra.left_one_body, intra.left_two_body, intra.left_three_body))
        _grouped_bodies(target.right, (intra.right_one_body, intra.right_two_body, intra.right_three_body))
        _set(target.fusion, *_fusion(intra))
        with torch.no_grad():
            target.gamma_inter.copy_(intra.gamma_inter.detach().double().repeat_interleave(f).view(1, -1, 1, 1))
        spatial, bs, spectral, bt, spatial_one, bo = _three_unit(inter)
        _set(target.spatial, spatial, bs)
        _set(target.spectral, spectral, bt)
        _set(target.spatial_one, spatial_one, bo)

    _set(folded.last_reduce, *_wn(model.last_reduceD[0]))  # type: ignore[arg-type]
    _set(folded.conv, *_wn(model.conv[0]))  # type: ignore[arg-type]
    wr, br = _wn(model.rnn_reduceD[0])  # type: ignore[arg-type]
    gamma_rnn = model.gamma_rnn.detach().double()
    _set(folded.merge_out, wr[:, :f] * gamma_rnn[0], br)
    _set(folded.merge_state, wr[:, f:] * gamma_rnn[1], None)

    tail_convs = [m for m in folded.tail if isinstance(m, nn.Conv2d)]
    source_convs = [m for m in model.tail.modules() if isinstance(m, WNConv)]
    for target_conv, source in zip(tail_convs, source_convs, strict=True):
        _set(target_conv, *_wn(source))

    return folded.to(dtype).eval().requires_grad_(False)
