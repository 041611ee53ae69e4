"""DualSR's fine stage: SAM-weighted back-projection (the published ``backprojection.m``), batched, in torch.

One iteration, per scene::

    d = imresize(im_h, 1/factor)                  # MATLAB bicubic with antialiasing
    c = min(SAM(d, im_l) in degrees, 1)           # one weight per scene, SAM.m over the whole image
    im_h = im_h + imresize(c · (im_l − d), factor)

Two ways to use it:

- **Dual stage (the paper)**: ``im_h`` is CoarSR's ×s output and ``im_l`` the ×s/2 output of CoarSR on the same
  LR input, ``factor = 2``. Needs a ×s/2 model (×4 uses ×2, ×8 uses ×4). Both results should be clipped to [0, 1]
  first, as the published test script does.
- **Back-projection against the LR input**: ``im_l`` is the LR input itself and ``factor = s``. The classic
  consistency step with the same SAM weighting, for scales that have no ×s/2 model (×3, ×2). It enforces that the
  SR result downsamples back to the observation; the paper's dual stage uses a finer guide and is preferred when
  the ×s/2 model exists.
"""

from __future__ import annotations

import torch

from dualsr_deploy.errors import InputError
from dualsr_deploy.metrics import sam_map
from dualsr_deploy.ops.imresize import imresize


def sam_weight(downsampled: torch.Tensor, guide: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``min(SAM°, 1)`` per scene: shape ``()`` for cubes ``(C, H, W)``, ``(B,)`` for batches, float64. ``valid``:
    an ``(H, W)`` bool mask of the pixels to average over (cubes only; None: all)."""
    angles = sam_map(downsampled, guide)
    if valid is not None:
        return angles[valid].mean().clamp_max(1.0)
    return angles.mean(dim=(-2, -1)).clamp_max(1.0)


def backproject(
    im_h: torch.Tensor,
    im_l: torch.Tensor,
    *,
    factor: int = 2,
    iterations: int = 1,
) -> torch.Tensor:
    """SAM-weighted back-projection of ``im_h`` onto ``im_l``.

    Args:
        im_h: the high-resolution estimate, ``(C, H, W)`` or ``(B, C, H, W)``, float32 or float64.
        im_l: the guide at ``1/factor`` resolution, ``(…, C, H/factor, W/factor)``, same dtype and device.
        factor: the resolution ratio between the two (2 for the paper's dual stage).
        iterations: back-projection steps (the published script does 1).

    Returns:
        The refined estimate, shape and dtype of ``im_h`` (not clipped). The SAM weight is computed per scene.
    """
    if iterations < 1:
        raise InputError(f"iterations must be ≥ 1; got {iterations}")
    if factor < 2:
        raise InputError(f"factor must be an integer ≥ 2; got {factor}")
    if im_h.dim() not in (3, 4) or im_l.dim() != im_h.dim():
        raise InputError(
            f"backproject takes (C, H, W) or (B, C, H, W) cubes of the same rank; got {tuple(im_h.shape)} and "
            f"{tuple(im_l.shape)}"
        )
    expected = (*im_h.shape[:-2], im_h.shape[-2] // factor, im_h.shape[-1] // factor)
    if im_h.shape[-2] % factor or im_h.shape[-1] % factor or tuple(im_l.shape) != expected:
        raise InputError(
            f"im_l {tuple(im_l.shape)} must be im_h {tuple(im_h.shape)} reduced by factor {factor} in H and W "
            f"(expected {expected})"
        )
    if im_h.dtype != im_l.dtype or im_h.device != im_l.device:
        raise InputError(
            f"im_h and im_l must share dtype and device; got {im_h.dtype}/{im_h.device} and {im_l.dtype}/{im_l.device}"
        )
    if not im_h.is_floating_point():
        raise InputError(f"backproject works on float32 or float64 cubes; got {im_h.dtype}")
    return backproject_with_weights(im_h, im_l, iterations)[0]


def backproject_with_weights(
    im_h: torch.Tensor, im_l: torch.Tensor, iterations: int = 1, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`backproject` (arguments already checked) and the SAM weight of each iteration (float64); ``valid``
    (``(H, W)`` at ``im_l``'s resolution) limits the weight to valid pixels."""
    weights = []
    for _ in range(iterations):
        down = downsample(im_h, im_l)
        weight = sam_weight(down, im_l, valid)
        weights.append(weight)
        im_h = project(im_h, im_l, down, weight)
    return im_h, weights


def downsample(im_h: torch.Tensor, im_l: torch.Tensor) -> torch.Tensor:
    """``d = imresize(im_h)`` at ``im_l``'s size (MATLAB bicubic with antialiasing): what the SAM weight compares
    with the guide and the correction is taken from."""
    return imresize(im_h, size=(im_l.shape[-2], im_l.shape[-1]))


def sam_angles(im_h: torch.Tensor, im_l: torch.Tensor) -> torch.Tensor:
    """SAM° per pixel between ``d`` (:func:`downsample`) and the guide ``im_l``, ``(…, H/f, W/f)`` float64: what the
    weight averages (a scene computed in blocks sums them block by block)."""
    return sam_map(downsample(im_h, im_l), im_l)


def project(im_h: torch.Tensor, im_l: torch.Tensor, down: torch.Tensor, weight: torch.Tensor | float) -> torch.Tensor:
    """One step with a given weight (per scene: ``()`` or ``(B,)``): ``im_h + imresize(c · (im_l − d), factor)``."""
    scale = torch.as_tensor(weight, dtype=torch.float64).to(im_h.device, im_h.dtype)
    if im_h.dim() == 4 and scale.dim() == 1:
        scale = scale.view(-1, 1, 1, 1)
    return im_h + imresize(scale * (im_l - down), size=(im_h.shape[-2], im_h.shape[-1]))
