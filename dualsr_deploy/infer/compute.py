"""Computing one scene (:func:`compute_scene`), complete or with invalid pixels or bad bands
(:mod:`dualsr_deploy.data.validity`). A complete scene (every pixel valid, every band good) runs whole; otherwise:

1. Invalid pixels are filled with their nearest valid pixel's values (no step for the network to ring at).
2. The good bands are split at bad bands into segments; each segment of ≥ 5 bands runs through the coarse model as
   its own cube (and the ×s/2 one for ``dual``); shorter segments are upsampled bicubically (MATLAB's kernel).
3. The fine stage runs over the network's bands at once, its SAM weight averaged over the guide's valid pixels.
4. The output: bad bands are the nearest-neighbour upsampling of their raw input values, and every output pixel
   whose nearest LR source pixel was invalid is marked invalid (written as the no-data value).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.data.validity import MIN_SEGMENT, fill_invalid, nearest_up, segments
from dualsr_deploy.errors import DataError
from dualsr_deploy.infer.batching import TileRunner
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.ops.fine import clip_range, finish_stage, floor_tensor
from dualsr_deploy.ops.imresize import imresize


def plan_segments(scene: Scene) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(segments run through the network, shorter segments upsampled bicubically); refuses a scene with no segment
    of ≥ :data:`MIN_SEGMENT` good bands."""
    return split_segments(scene.good, scene.meta.origin or scene.meta.source)


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


@dataclass
class Computed:
    """One scene computed: the clipped coarse result and the stage's result, each ``(C, s·H, s·W)`` float32 in
    normalised units (bad bands 0; :func:`output_scene` puts their raw values back), the fine stage's SAM weight
    (None for ``coarse``) and the seconds of the coarse stage (both models) and of the fine stage."""

    coarse: torch.Tensor
    result: torch.Tensor
    sam_weight: float | None
    seconds: dict[str, float] = field(default_factory=dict)


def compute_scene(runner: TileRunner, options: InferOptions, scene: Scene, device: torch.device) -> Computed:
    """The one per-scene computation that the run, :class:`~dualsr_deploy.infer.upscaler.Upscaler` and the xarray
    path call (a streamed scene runs the same steps strip by strip: :mod:`dualsr_deploy.infer.streaming`). A scene
    with every pixel valid and every band good runs whole; otherwise as the module says (filled, by segments, the
    SAM weight over valid pixels)."""
    scale, name = options.scale, scene.name
    network, short = plan_segments(scene)
    valid = scene.valid
    if valid is None and scene.meta.bad_bands:  # the SAM weight over the valid pixels (all), as with a mask
        valid = np.ones(scene.cube.shape[1:], dtype=bool)
    cube = torch.from_numpy(scene.cube if valid is None else fill_invalid(scene.cube, valid)).to(device)
    started = time.perf_counter()
    high = _coarse(runner, scale, cube, network, short, name)
    floor = floor_tensor(scene.meta.band_floor, device)
    coarse = clip_range(high, floor)
    if options.stage == "coarse":
        seconds = {"coarse": time.perf_counter() - started, "fine": 0.0}
        return Computed(coarse, coarse if options.clip else high, None, seconds)
    bands = [i for a, b in network for i in range(a, b)]
    whole = len(bands) == cube.shape[0]
    low = None
    guide_valid = valid
    if options.stage == "dual":
        low = _coarse(runner, scale // 2, cube, network, [], name, packed=True)
        guide_valid = nearest_up(valid, scale // 2) if valid is not None else None
    ended = time.perf_counter()
    fine, weight = finish_stage(
        options.stage,
        options.clip,
        high if whole else high[bands],
        low,
        cube if whole else cube[bands],
        valid=torch.from_numpy(np.ascontiguousarray(guide_valid)).to(device) if guide_valid is not None else None,
        floor=floor if whole or floor is None else floor[bands],
    )
    if whole:
        result = fine
    else:
        result = coarse.clone() if options.clip else high.clone()
        result[bands] = fine
    seconds = {"coarse": ended - started, "fine": time.perf_counter() - ended}
    return Computed(coarse, result, weight, seconds)


def _coarse(
    runner: TileRunner,
    scale: int,
    cube: torch.Tensor,
    network: list[tuple[int, int]],
    short: list[tuple[int, int]],
    name: str,
    *,
    packed: bool = False,
) -> torch.Tensor:
    """CoarSR ×``scale`` of the network segments (whole when one covers every band) and MATLAB bicubic of the
    ``short`` ones; ``packed``: the network segments' bands only, one after another (the ×s/2 guide)."""
    c, h, w = cube.shape
    if network == [(0, c)]:
        return runner.coarse(scale, [cube], [name])[0]
    bands = sum(b - a for a, b in network) if packed else c
    high = torch.zeros((bands, scale * h, scale * w), device=cube.device)
    offset = 0
    for index, (a, b) in enumerate(network):  # progress counts a scene's tiles once, not once per band segment
        at = offset if packed else a
        high[at : at + b - a] = runner.coarse(scale, [cube[a:b]], [name], count=index == 0, scene_bands=c)[0]
        offset += b - a
    for a, b in short:
        high[a:b] = imresize(cube[a:b], scale)
    return high


def output_scene(scene: Scene, result: np.ndarray, scale: int, meta: SceneMeta) -> Scene:
    """The output scene: ``result`` with the input's validity and bad bands' raw values, nearest-upsampled."""
    valid = nearest_up(scene.valid, scale) if scene.valid is not None else None
    passthrough = nearest_up(scene.passthrough, scale) if scene.passthrough is not None else None
    cube = np.ascontiguousarray(result)
    if meta.bad_bands:
        cube[list(meta.bad_bands)] = 0.0
    return Scene(scene.name, cube, meta, valid=valid, passthrough=passthrough)


__all__ = ["Computed", "compute_scene", "output_scene", "plan_segments", "split_segments"]
