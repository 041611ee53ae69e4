"""``--reference bicubic``: the MATLAB-bicubic interpolation of each input written beside its output, in the same
format, structure and units (``<output>_bicubic.<suffix>``), so that the two can be compared in QGIS or xarray: the
baseline every super-resolution is judged against. Its input is what the network sees (invalid pixels filled from
their nearest valid pixel, bad bands passed through as in the output), clipped as the output is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dualsr_deploy.data.validity import fill_invalid
from dualsr_deploy.ops.fine import clip_range, floor_tensor
from dualsr_deploy.ops.imresize import imresize

REFERENCES = ("bicubic",)
SUFFIX = "_bicubic"


def reference_path(output: Path) -> Path:
    """``x.tif`` → ``x_bicubic.tif``; a COG ``x.cog.tif`` → ``x_bicubic.cog.tif``; ENVI ``x.hdr`` →
    ``x_bicubic.hdr``."""
    from dualsr_deploy.data.formats.geotiff import COG_SUFFIX

    if output.name.lower().endswith(COG_SUFFIX):
        return output.with_name(f"{output.name[: -len(COG_SUFFIX)]}{SUFFIX}{output.name[-len(COG_SUFFIX) :]}")
    return output.with_name(f"{output.stem}{SUFFIX}{output.suffix}")


def upsampled(filled: torch.Tensor, scale: int, clip: bool, floor: tuple[float, ...] | None) -> torch.Tensor:
    """``imresize(filled, scale)`` of LR rows ``(C, h, w)`` (invalid pixels already filled), clipped as outputs are."""
    up = imresize(filled.double(), scale).float()
    return clip_range(up, floor_tensor(floor)) if clip else up


def bicubic_cube(
    cube: np.ndarray, valid: np.ndarray | None, scale: int, clip: bool, floor: tuple[float, ...] | None
) -> np.ndarray:
    """The whole reference of a scene held in memory, normalised ``(C, s·h, s·w)``."""
    filled = cube if valid is None else (fill_invalid(cube, valid) if valid.any() else np.zeros_like(cube))
    return upsampled(torch.from_numpy(np.ascontiguousarray(filled)), scale, clip, floor).numpy()


__all__ = ["REFERENCES", "bicubic_cube", "reference_path", "upsampled"]
