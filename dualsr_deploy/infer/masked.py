"""Super-resolving a scene with invalid pixels or bad bands (:mod:`dualsr_deploy.data.validity`).

1. Invalid pixels are filled with their nearest valid pixel's values (no step for the network to ring at).
2. The good bands are split at bad bands into segments; each segment of ≥ 5 bands runs through the coarse model as
   its own cube (and the ×s/2 one for ``dual``); shorter segments are upsampled bicubically (MATLAB's kernel).
3. The fine stage runs over the network's bands at once, its SAM weight averaged over the guide's valid pixels.
4. The output: bad bands are the nearest-neighbour upsampling of their raw input values, and every output pixel
   whose nearest LR source pixel was invalid is marked invalid (written as the no-data value).
"""

from __future__ import annotations

import numpy as np
import torch

from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.data.validity import MIN_SEGMENT, fill_invalid, nearest_up, segments
from dualsr_deploy.errors import DataError
from dualsr_deploy.infer.batching import TileRunner
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.ops.fine import clip_range, finish_stage, floor_tensor
from dualsr_deploy.ops.imresize import imresize


def is_complete(scene: Scene) -> bool:
    """Every pixel valid and every band good: the plain path, batched with other scenes."""
    return scene.valid is None and not scene.meta.bad_bands


def plan_segments(scene: Scene) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(segments run through the network, shorter segments upsampled bicubically); refuses a scene with no segment
    of ≥ :data:`MIN_SEGMENT` good bands."""
    return split_segments(scene.good, scene.meta.source)


def split_segments(good: np.ndarray, source: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """:func:`plan_segments` from the good-band flags ``(C,)``."""
    runs = segments(good)
    network = [(a, b) for a, b in runs if b - a >= MIN_SEGMENT]
    if not network:
        lengths = ", ".join(str(b - a) for a, b in runs) or "none"
        raise DataError(
            f"{source}: no run of at least {MIN_SEGMENT} contiguous good bands (runs between bad bands: "
            f"{lengths}); CoarSR needs {MIN_SEGMENT} neighbouring bands"
        )
    return network, [run for run in runs if run not in network]


def super_resolve(
    runner: TileRunner, options: InferOptions, scene: Scene, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, float | None]:
    """The clipped coarse result and the stage's result, each ``(C, s·H, s·W)`` float32 in normalised units (bad
    bands 0; :func:`output_scene` puts their raw values back), and the fine stage's SAM weight (what the scene went
    through is :class:`~dualsr_deploy.infer.records.SceneFacts`)."""
    scale, name = options.scale, scene.name
    network, short = plan_segments(scene)
    valid = scene.valid if scene.valid is not None else np.ones(scene.cube.shape[1:], dtype=bool)
    cube = torch.from_numpy(fill_invalid(scene.cube, valid)).to(device)
    c, h, w = cube.shape
    high = torch.zeros((c, scale * h, scale * w), device=device)
    for index, (a, b) in enumerate(network):  # progress counts a scene's tiles once, not once per band segment
        high[a:b] = runner.coarse(scale, [cube[a:b]], [name], count=index == 0)[0]
    for a, b in short:
        high[a:b] = imresize(cube[a:b], scale)
    floor = floor_tensor(scene.meta.band_floor, device)
    coarse = clip_range(high, floor)
    if options.stage == "coarse":
        return coarse, (coarse if options.clip else high), None
    bands = [i for a, b in network for i in range(a, b)]
    low = None
    if options.stage == "dual":
        half = scale // 2
        low = torch.zeros((len(bands), half * h, half * w), device=device)
        offset = 0
        for index, (a, b) in enumerate(network):
            low[offset : offset + b - a] = runner.coarse(half, [cube[a:b]], [name], count=index == 0)[0]
            offset += b - a
        guide_valid = nearest_up(valid, half)
    else:
        guide_valid = valid
    fine, weight = finish_stage(
        options.stage,
        options.clip,
        high[bands],
        low,
        cube[bands],
        valid=torch.from_numpy(np.ascontiguousarray(guide_valid)).to(device),
        floor=floor[bands] if floor is not None else None,
    )
    result = coarse.clone() if options.clip else high.clone()
    result[bands] = fine
    return coarse, result, weight


def output_scene(scene: Scene, result: np.ndarray, scale: int, meta: SceneMeta) -> Scene:
    """The output scene: ``result`` with the input's validity and bad bands' raw values, nearest-upsampled."""
    valid = nearest_up(scene.valid, scale) if scene.valid is not None else None
    passthrough = nearest_up(scene.passthrough, scale) if scene.passthrough is not None else None
    cube = np.ascontiguousarray(result)
    if meta.bad_bands:
        cube[list(meta.bad_bands)] = 0.0
    return Scene(scene.name, cube, meta, valid=valid, passthrough=passthrough)


__all__ = ["is_complete", "output_scene", "plan_segments", "split_segments", "super_resolve"]
