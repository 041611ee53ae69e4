"""MATLAB's ``imresize(..., 'bicubic')``, exactly, as two matrix products.

MATLAB resizes one dimension at a time with a separable cubic kernel (a = −0.5). Per dimension and output
sample ``x`` (1-based) it takes the source position ``u = x/scale + 0.5·(1 − 1/scale)``, the ``ceil(4/scale) + 2``
(shrinking with antialiasing) or 6 nearest taps, weights them with the kernel (stretched by ``1/scale`` when
shrinking with antialiasing, so it also low-passes), normalises the weights to sum 1 and folds out-of-range taps
back by mirroring (``[1..n, n..1]``). PyTorch's and PIL's bicubic resizes differ from this at the borders by up to
~0.05, so the algorithm is implemented here rather than borrowed.

Each dimension's operation is a fixed ``(out, in)`` matrix, computed in float64 and cached per
(size, scale, antialias, device, dtype); resizing is then ``W_h @ x @ W_wᵀ`` on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from dualsr_deploy.errors import InputError

_KERNEL_WIDTH = 4.0


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=256)
def _matrix_float64(in_length: int, out_length: int, scale: float, antialias: bool) -> np.ndarray:
    """The ``(out_length, in_length)`` float64 matrix of MATLAB's ``contributions()`` for one dimension."""
    width = _KERNEL_WIDTH
    shrink_aa = scale < 1 and antialias
    if shrink_aa:
        width = _KERNEL_WIDTH / scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(scale * distance) if shrink_aa else _cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(1, in_length + 1), np.arange(in_length, 0, -1)])
    folded = mirror[np.mod(indices.astype(np.int64) - 1, mirror.size)] - 1
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.repeat(np.arange(out_length), taps)
    np.add.at(matrix, (rows, folded.reshape(-1)), weights.reshape(-1))
    return matrix


@lru_cache(maxsize=256)
def resize_matrix(
    in_length: int, out_length: int, scale: float, antialias: bool, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The cached ``(out_length, in_length)`` resize matrix for one dimension, on ``device`` in ``dtype``."""
    return torch.from_numpy(_matrix_float64(in_length, out_length, scale, antialias)).to(device, dtype)


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    pair = tuple(float(v) for v in value)
    if len(pair) != 2:
        raise InputError(f"{name} must be one number or a pair (rows, cols); got {value!r}")
    return pair[0], pair[1]


def output_size(in_size: tuple[int, int], scale: float | Sequence[float]) -> tuple[int, int]:
    """MATLAB's output size for a scale: ``ceil(scale · n)`` per dimension."""
    sh, sw = _pair(scale, "scale")
    return math.ceil(sh * in_size[0]), math.ceil(sw * in_size[1])


def imresize(
    x: torch.Tensor,
    scale: float | Sequence[float] | None = None,
    *,
    size: Sequence[int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """MATLAB ``imresize(x, scale | [rows cols], 'bicubic', 'Antialiasing', antialias)`` on ``(..., H, W)``.

    Args:
        x: float32 or float64 tensor ``(..., H, W)`` on any device; leading dimensions are batched.
        scale: a factor (or ``(rows, cols)`` factors); the output is ``ceil(scale · n)`` per dimension and the
            kernel uses the factor itself, as MATLAB does.
        size: the output ``(rows, cols)`` instead of a scale; the factors are then ``out / in``.
        antialias: stretch the kernel when shrinking (MATLAB's default, on).

    Returns:
        ``(..., rows, cols)`` in the dtype and on the device of ``x``.
    """
    if (scale is None) == (size is None):
        raise InputError("give exactly one of scale or size")
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise InputError(f"imresize needs a tensor (..., H, W); got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise InputError(f"imresize works on float32 or float64; got {x.dtype} (convert with x.double())")
    in_h, in_w = int(x.shape[-2]), int(x.shape[-1])
    if size is not None:
        out_h, out_w = (int(v) for v in size)
        if out_h < 1 or out_w < 1:
            raise InputError(f"output size must be positive; got {tuple(size)}")
        scale_h, scale_w = out_h / in_h, out_w / in_w
    else:
        assert scale is not None  # for mypy: checked above
        scale_h, scale_w = _pair(scale, "scale")
        if scale_h <= 0 or scale_w <= 0:
            raise InputError(f"scale must be positive; got {scale!r}")
        out_h, out_w = output_size((in_h, in_w), (scale_h, scale_w))
    rows = resize_matrix(in_h, out_h, scale_h, antialias, x.device, x.dtype)
    cols = resize_matrix(in_w, out_w, scale_w, antialias, x.device, x.dtype)
    # MATLAB resizes the dimension with the smaller scale first; in exact arithmetic the order does not matter,
    # and doing the shrinking product first is also the cheaper order.
    if scale_h <= scale_w:
        return torch.matmul(torch.matmul(rows, x), cols.T)
    return torch.matmul(rows, torch.matmul(x, cols.T))


@lru_cache(maxsize=256)
def _spans(in_length: int, out_length: int, scale: float, antialias: bool, block: int) -> tuple[tuple[int, ...], ...]:
    """Per block of ``block`` outputs ``[a, b)``, the inputs ``[lo, hi)`` their taps reach (the rest of the matrix is
    zeros)."""
    matrix = _matrix_float64(in_length, out_length, scale, antialias)
    spans = []
    for a in range(0, out_length, block):
        b = min(a + block, out_length)
        taps = np.flatnonzero(np.any(matrix[a:b] != 0, axis=0))
        spans.append((a, b, int(taps[0]), int(taps[-1]) + 1))
    return tuple(spans)


def imresize_banded(x: torch.Tensor, scale: float, *, block: int = 64, rows: slice | None = None) -> torch.Tensor:
    """:func:`imresize` by one factor, the columns applied block by block over the inputs each block's taps reach:
    the same products (the matrices' zeros skipped), at a cost that grows with the width instead of its square, for
    wide strips (a granule's 1280 columns). ``x (..., H, W)`` float32 or float64. ``rows``: only these output rows
    (steps of 1), for a strip whose halo rows are not wanted: the same taps, though not always the same rounding
    (BLAS rounds a one-row product, a matrix-vector one, otherwise than the same row in a larger one)."""
    in_h, in_w = int(x.shape[-2]), int(x.shape[-1])
    out_h, out_w = output_size((in_h, in_w), scale)
    weights = resize_matrix(in_h, out_h, scale, True, x.device, x.dtype)
    if rows is not None:
        weights = weights[rows]
    cols = resize_matrix(in_w, out_w, scale, True, x.device, x.dtype)
    x = torch.matmul(weights, x)  # the rows first, as imresize does for equal factors
    out = torch.empty((*x.shape[:-1], out_w), dtype=x.dtype, device=x.device)
    for a, b, lo, hi in _spans(in_w, out_w, float(scale), True, block):
        out[..., a:b] = torch.matmul(x[..., lo:hi], cols[a:b, lo:hi].T)
    return out
