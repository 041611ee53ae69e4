"""HR → LR as the paper's protocol does it: optional Gaussian blur, MATLAB bicubic downsampling, optional noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from dualsr_deploy.errors import InputError
from dualsr_deploy.ops.imresize import imresize


@dataclass(frozen=True)
class Blur:
    """A Gaussian blur as MATLAB's ``fspecial('gaussian', size, sigma)``, applied with replicated borders."""

    size: int
    sigma: float

    def __post_init__(self) -> None:
        if self.size < 1 or self.size % 2 == 0:
            raise InputError(f"blur kernel size must be odd and positive, got {self.size}")
        if not self.sigma > 0:
            raise InputError(f"blur sigma must be positive, got {self.sigma}")

    @classmethod
    def parse(cls, text: str) -> Blur:
        """``SIZE:SIGMA``, e.g. ``7:1.5``."""
        size, _, sigma = text.partition(":")
        try:
            return cls(int(size), float(sigma))
        except ValueError:
            raise InputError(f"a blur is SIZE:SIGMA (e.g. 7:1.5), not {text!r}") from None

    def kernel(self) -> np.ndarray:
        """``(size, size)`` float64 weights summing to 1 (``fspecial`` also zeroes values below eps·max)."""
        half = (self.size - 1) / 2
        axis = np.arange(self.size) - half
        weights = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * self.sigma**2))
        weights[weights < np.finfo(np.float64).eps * weights.max()] = 0
        return weights / weights.sum()

    def __str__(self) -> str:
        return f"{self.size}:{self.sigma:g}"


def gaussian_blur(x: torch.Tensor, blur: Blur) -> torch.Tensor:
    """Blur every plane of ``x`` ``(..., H, W)`` (float) with replicated borders (MATLAB ``imfilter`` 'replicate')."""
    kernel = torch.as_tensor(blur.kernel(), dtype=x.dtype, device=x.device)[None, None]
    planes = x.reshape(-1, 1, *x.shape[-2:])
    pad = blur.size // 2
    padded = F.pad(planes, (pad, pad, pad, pad), mode="replicate")
    return F.conv2d(padded, kernel).reshape(x.shape)


def modcrop(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop ``(..., H, W)`` at the bottom and right to multiples of ``scale`` (the protocol's HR ground truth)."""
    height, width = x.shape[-2] - x.shape[-2] % scale, x.shape[-1] - x.shape[-1] % scale
    return x[..., :height, :width]


def degrade(
    hr: torch.Tensor,
    scale: int,
    *,
    blur: Blur | None = None,
    noise_sigma: float = 0.0,
    seed: int | None = None,
) -> torch.Tensor:
    """LR cube from an HR cube: ``imresize(blur(hr), 1/scale)`` (+ Gaussian noise, then clipped to [0, 1]).

    Args:
        hr: ``(..., C, H, W)`` float32/float64 in [0, 1]; H and W must be multiples of ``scale`` (see
            :func:`modcrop`) so that LR pixel (i, j) covers HR pixels ``scale·i .. scale·i + scale − 1``.
        scale: integer downsampling factor.
        blur: optional Gaussian blur before downsampling.
        noise_sigma: standard deviation of additive Gaussian noise on the [0, 1] scale (0: none).
        seed: seed of the noise (deterministic per seed).

    Returns:
        ``(..., C, H/scale, W/scale)`` in the dtype and on the device of ``hr``.
    """
    if scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale}")
    height, width = int(hr.shape[-2]), int(hr.shape[-1])
    if height % scale or width % scale:
        raise InputError(f"HR size {height}×{width} is not a multiple of ×{scale}; crop it first (modcrop)")
    if noise_sigma < 0:
        raise InputError(f"noise sigma must be >= 0, got {noise_sigma}")
    x = hr if blur is None else gaussian_blur(hr, blur)
    lr = imresize(x, 1.0 / scale) if scale > 1 else x.clone()
    if noise_sigma > 0:
        generator = torch.Generator(device=lr.device)
        generator.manual_seed(0 if seed is None else seed)
        noise = torch.randn(lr.shape, generator=generator, device=lr.device, dtype=lr.dtype)
        lr = (lr + noise_sigma * noise).clamp_(0.0, 1.0)
    return lr
