"""Loading CoarSR for inference: the public entry point :func:`load_coarsr`."""

from __future__ import annotations

import os

import torch

from dualsr_deploy.archs.coarsr import CoarSR
from dualsr_deploy.archs.cube import CoarSRCube
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.archs.neighbours import NeighbourRule, check_rule
from dualsr_deploy.checkpoint import CheckpointInfo, read_checkpoint
from dualsr_deploy.errors import InputError, ScaleMismatchError

# LR pixels per body/tail call on CPU, measured on the 2-core development machine (benchmarks/cube_vs_loop.py,
# NHWC): one 128×128 plane per call beat 4 planes by 1.26×; at 64×64, 1 and 4 planes per call were within run-
# to-run noise (±8 %); all 31 bands at once was slower than the per-band loop. GPUs take every plane at once.
CPU_PIXELS_PER_CALL = 128 * 128


def default_pixels_per_call(device: torch.device) -> int | None:
    """How many LR pixels go through the network per call by default: ~one 128×128 plane on CPU, all on GPU."""
    return CPU_PIXELS_PER_CALL if device.type == "cpu" else None


def load_reference(path: str | os.PathLike[str], *, scale: int | None = None) -> tuple[CoarSR, CheckpointInfo]:
    """The published per-band :class:`CoarSR` (float32, CPU, eval mode) and what was detected in the file."""
    model, info = read_checkpoint(path)
    if scale is not None and info.scale != scale:
        raise ScaleMismatchError(
            f"{path}: this checkpoint is a ×{info.scale} model, but ×{scale} was requested; use a ×{scale} "
            "checkpoint or ask for the scale it has"
        )
    return model, info


def load_coarsr(
    path: str | os.PathLike[str],
    *,
    neighbours: str | None = None,
    device: str | torch.device | None = None,
    scale: int | None = None,
    dtype: torch.dtype = torch.float32,
    pixels_per_call: int | None = None,
    memory_budget: int | None = None,
) -> CoarSRCube:
    """Load a checkpoint as the folded, band-parallel cube model.

    Args:
        path: a published-format ``.pth`` or a dualsr ``.safetensors`` checkpoint.
        neighbours: ``"paper"`` or ``"reference"``; ``None`` takes the rule from the checkpoint's metadata, or
            ``reference`` for published-format files (what their training loops used).
        device: where the model lives; ``None`` means CPU.
        scale: if given, the checkpoint must be a model of this scale (else :class:`ScaleMismatchError`).
        dtype: the model's floating-point type (inputs must match it).
        pixels_per_call: LR pixels (planes × h × w) per network call; ``None`` picks the device default.
        memory_budget: bytes of activations per network call; sets ``pixels_per_call`` from the model's size
            (give one of the two).

    Returns:
        A module mapping ``lr (B, C, h, w)`` in [0, 1] to SR ``(B, C, s·h, s·w)`` (unclipped), with attributes
        ``scale``, ``neighbours`` and ``info`` (the :class:`CheckpointInfo`).
    """
    if memory_budget is not None and pixels_per_call is not None:
        raise InputError("give pixels_per_call or memory_budget, not both")
    model, info = load_reference(path, scale=scale)
    rule: NeighbourRule = check_rule(neighbours) if neighbours is not None else info.neighbour_rule
    target = torch.device(device) if device is not None else torch.device("cpu")
    core = fold_coarsr(model, rule, dtype)
    if target.type == "cpu":
        core.use_channels_last()
    cube = CoarSRCube(core).to(target)
    if memory_budget is not None:
        core.set_memory_budget(memory_budget)
    else:
        core.pixels_per_call = pixels_per_call if pixels_per_call is not None else default_pixels_per_call(target)
    cube.info = info
    return cube
