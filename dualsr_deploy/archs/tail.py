"""The upsampling tail as one low-resolution convolution.

CoarSR's tail (DESIGN.md) is ``[conv3×3 F→4F, PixelShuffle(2)]`` per factor 2 (or ``conv F→9F, PixelShuffle(3)``)
then ``conv3×3 F→1``, with no nonlinearity in between: a linear map with a bias. Every output pixel of the
``s × s`` block of LR pixel ``(i, j)`` depends on the LR maps within :data:`TAIL_RADIUS` pixels of it, so away from
the image's edge the tail *is* one LR convolution ``F → s²`` with a ``5 × 5`` kernel followed by a pixel shuffle:
the taps are the same weights multiplied out (in float64), and it does ~7× fewer multiply-adds at ×4
(6,400 against 48,384 per LR pixel for F = 16) and ~6× fewer at ×2.

At the edge it is not the same: the tail's intermediate maps are zero-padded at their own resolution, which no
padding of the LR input reproduces. Only the outermost ring of LR pixels is touched (the intermediate convolutions
reach one pixel out at each resolution, less than one LR pixel). :func:`composed_tail` recomputes that ring's output
with the tail itself, on strips of :data:`EDGE_STRIP` LR pixels along each edge, so the result is the tail's to
float32 rounding everywhere (tested at ×2, ×3, ×4 and ×8, down to one-pixel-wide inputs).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

# Radius in LR pixels of the composed kernel (5 × 5) and of the tail's dependence (for s = 2, 3, 4, 8).
TAIL_RADIUS = 2
# LR rows (columns) of each edge strip: the ring's output depends on the first three rows only (the intermediate
# maps reach one pixel out at each resolution), so three rows give the ring exactly.
EDGE_STRIP = 3


def compose_tail(tail: nn.Module, n_feats: int, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tail as ``(kernel (s², F, 5, 5), bias (s²,))`` in float64, for ``conv2d(x, kernel, bias, padding=2)``
    then ``pixel_shuffle(s)``: exact away from the outermost LR ring. ``tail`` maps ``(N, F, h, w)`` to
    ``(N, 1, s·h, s·w)`` and is not changed (a float64 copy of its weights is used)."""
    r, s, f = TAIL_RADIUS, scale, n_feats
    side = 4 * r + 1  # an impulse in the middle stays more than r pixels away from the edge
    centre = side // 2
    weights = {name: p.detach().to(torch.float64) for name, p in tail.named_parameters()}
    weights.update({name: b.detach().to(torch.float64) for name, b in tail.named_buffers()})

    def apply(x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(tail, weights, (x,))

    with torch.no_grad():
        zero = apply(torch.zeros(1, f, side, side, dtype=torch.float64))[0, 0]
        impulses = torch.zeros(f, f, side, side, dtype=torch.float64)
        impulses[torch.arange(f), torch.arange(f), centre, centre] = 1
        response = apply(impulses)[:, 0] - zero  # (F, s·side, s·side): input channel c's impulse, per output pixel
        kernel = torch.zeros(s * s, f, 2 * r + 1, 2 * r + 1, dtype=torch.float64)
        for u in range(2 * r + 1):
            for v in range(2 * r + 1):
                # output block (p, q) sees the impulse at kernel tap (u, v) when p + u − r = centre
                p, q = centre - (u - r), centre - (v - r)
                block = response[:, s * p : s * p + s, s * q : s * q + s]  # (F, s, s)
                kernel[:, :, u, v] = block.reshape(f, s * s).T
        outside = response.abs().amax(dim=0).reshape(side, s, side, s).amax(dim=(1, 3))
        outside[centre - r : centre + r + 1, centre - r : centre + r + 1] = 0
        if float(outside.max()) != 0.0:
            raise ValueError(f"the tail reaches further than {r} LR pixels; it cannot be composed into a 5 × 5 conv")
        bias = zero[s * centre : s * centre + s, s * centre : s * centre + s].reshape(s * s)
    return kernel, bias


def composed_tail(
    x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor, tail: nn.Module, scale: int
) -> torch.Tensor:
    """``tail(x)`` for ``x (N, F, h, w)`` through the composed kernel, the outermost LR ring through ``tail``
    itself (:data:`EDGE_STRIP`-pixel strips): ``(N, 1, s·h, s·w)``, equal to ``tail(x)`` up to rounding."""
    s = scale
    out = functional.pixel_shuffle(functional.conv2d(x, kernel, bias, padding=TAIL_RADIUS), s)
    k = EDGE_STRIP
    # The strips' own far edge is zero-padded too, so a strip gives only its first (last) LR row exactly; with
    # h ≤ k a strip is the whole map and exact throughout. Rows first, then columns, so corners come out exact.
    # Each pair of strips goes through the tail as one batch.
    n = x.shape[0]
    rows = tail(torch.cat([x[..., :k, :], x[..., -k:, :]]).contiguous())
    out[..., :s, :] = rows[:n, ..., :s, :]
    out[..., -s:, :] = rows[n:, ..., -s:, :]
    columns = tail(torch.cat([x[..., :, :k], x[..., :, -k:]]).contiguous())
    out[..., :, :s] = columns[:n, ..., :, :s]
    out[..., :, -s:] = columns[n:, ..., :, -s:]
    return out
