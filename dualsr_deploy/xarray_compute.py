"""What :mod:`dualsr_deploy.xarray` computes, on arrays: one scene in memory, or a Dask array chunk by chunk.

In memory, the scene goes through the same reader code as ``dualsr infer`` (:class:`ArrayReader`: statistics,
validity, normalisation, clip floors) and :func:`~dualsr_deploy.infer.compute.compute_scene`.

Dask: the scene-wide statistics come first (over row strips), then every chunk is read with a halo of
``⌈√2·reach⌉ + 1`` LR pixels (as a streamed scene is), computed as a scene of its own with the whole scene's
statistics, and cut back to its core. The fine stages' SAM weight is a map-reduce over the chunks' cores (spectral
angles of the valid guide pixels summed and counted), made before the result's map, which back-projects each
chunk with that weight. Models are loaded once per process (a ``dask.distributed`` worker included), with torch
on as many threads as the worker has.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualsr_deploy.data.formats.reader import SceneReader
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.data.scene import Scene, Window
from dualsr_deploy.data.validity import Masking, nearest_up
from dualsr_deploy.infer.compute import compute_scene, output_scene, plan_segments
from dualsr_deploy.infer.options import BackendSpec, InferOptions
from dualsr_deploy.infer.quality import reach
from dualsr_deploy.infer.routes import Route
from dualsr_deploy.infer.streaming import fill_margin
from dualsr_deploy.infer.upscaler import Upscaler
from dualsr_deploy.ops.backproject import downsample, project, sam_angles
from dualsr_deploy.ops.fine import clip_range, floor_tensor
from dualsr_deploy.optional import require


@dataclass(frozen=True)
class Request:
    """What to run, hashable: the key of the per-process model cache (a Dask worker loads its models once)."""

    scale: int
    stage: str
    weights: str
    backend: str
    precision: str
    device: str | None
    tile: int | None
    clip: bool

    def options(self) -> InferOptions:
        spec = BackendSpec.for_run(
            self.backend,
            scale=self.scale,
            stage=self.stage,
            device=self.device,
            precision=self.precision,
            weights=self.weights,
        )
        return InferOptions(scale=self.scale, stage=self.stage, backend=spec, tile=self.tile, clip=self.clip)


_UPSCALERS: dict[Request, Upscaler] = {}


def _upscaler(request: Request) -> Upscaler:
    """One :class:`Upscaler` per request and process: models load once per (Dask worker) process."""
    if request not in _UPSCALERS:
        _fit_threads_to_worker()
        _UPSCALERS[request] = Upscaler(request.options())
    return _UPSCALERS[request]


def _fit_threads_to_worker() -> None:
    """In a ``dask.distributed`` worker, torch's intra-op threads = the worker's threads: torch's default (every
    core) in each of several worker processes oversubscribes the machine several times over."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not in a distributed worker
        return
    torch.set_num_threads(max(1, int(worker.state.nthreads)))


class ArrayReader(SceneReader):
    """A ``(C, H, W)`` array (NumPy, or Dask: windows computed on request) as a scene, so that statistics, validity
    and normalisation are exactly those of ``dualsr infer``."""

    format = "xarray"
    from_file = False

    def __init__(self, array: Any, name: str, nodata: float | None, wavelengths: tuple[float, ...] | None) -> None:
        super().__init__(Path(name), name)
        self._array = array
        self.nodata = nodata
        self.wavelengths = wavelengths

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self._array.shape
        return int(c), int(h), int(w)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    def _read(self, window: Window | None) -> np.ndarray:
        part = self._array if window is None else self._array[:, window.rows, window.cols]
        return np.asarray(part.compute() if hasattr(part, "compute") else part)

    def statistics(self, normalise: Normalisation, masking: Masking) -> Any:
        """The scene-wide (rule, factor, bad bands, clip floors): from a pass over row strips where the rule needs
        only the range, else (percentiles) from one whole read, as a streamed scene gets them."""
        self.resolve_in_strips(normalise, masking=masking)
        if (normalise, masking) not in self._resolved:
            self.load(normalise, Window(0, 0, 1, self.shape[2]), masking)
        return self._resolved[(normalise, masking)]

    def seed(self, normalise: Normalisation, masking: Masking, resolved: Any) -> None:
        self._resolved[(normalise, masking)] = resolved


def _route(reader: ArrayReader, request: Request) -> Route:
    upscaler = _upscaler(request)
    return upscaler.route(upscaler.options.choose_weights(reader.shape[0], reader.wavelengths))


def what_ran(reader: ArrayReader, request: Request) -> dict[str, str]:
    """The result's attributes saying what ran: the stage (``auto`` resolved), the weights (the family ``auto``
    chose, or the file) and why ``auto`` chose them, as ``dualsr infer``'s manifest says it."""
    upscaler = _upscaler(request)
    choice = upscaler.options.choose_weights(reader.shape[0], reader.wavelengths)
    route = upscaler.route(choice)
    options = route.options
    ran = {"dualsr_stage": options.stage, "dualsr_weights": options.backend.weights_label(options.scale)}
    if route.choice is not None and choice is not None:  # this scene's reason: a route serves every scene alike
        ran["dualsr_weights"] = choice.family
        ran["dualsr_weights_choice"] = f"auto: {choice.reason}"
    if options.stage_choice:
        ran["dualsr_stage_choice"] = options.stage_choice
    ran["dualsr_backend"] = options.backend.label
    for name, why in (("backend", options.backend.backend_choice), ("precision", options.backend.precision_choice)):
        if why:
            ran[f"dualsr_{name}_choice"] = why
    return ran


def in_memory(reader: ArrayReader, request: Request) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The result's values, and its consistency with its input (:mod:`dualsr_deploy.infer.consistency`)."""
    from dualsr_deploy.infer.consistency import scene_consistency

    route = _route(reader, request)
    options = route.options
    scene = reader.load(options.normalise, masking=options.masking)
    route.prepare_scene(scene)
    device = route.pool.backend(options.scale, _widest(scene)).device
    sr = compute_scene(route.runner, options, scene, device).result.cpu().numpy()
    figures = scene_consistency(scene.cube, scene.valid, scene.good, sr, options.scale, scene.meta.scale_factor)
    return _raw(scene, sr, options), figures


def _widest(scene: Scene) -> int:
    return max(b - a for a, b in plan_segments(scene)[0])


def _raw(scene: Scene, result: np.ndarray, options: InferOptions) -> np.ndarray:
    from dualsr_deploy.infer.context import output_meta

    values = output_scene(scene, result, options.scale, output_meta(scene.meta, options.scale)).raw()
    nodata = scene.meta.nodata
    if values.dtype.kind == "f" and nodata is not None:  # xarray's convention: no-data is NaN in memory (to_netcdf
        values[values == nodata] = np.nan  # writes the _FillValue of the encoding kept on the result)
    return values


def lazy(reader: ArrayReader, data: Any, request: Request) -> Any:
    dask: Any = require("dask", feature="Dask-backed inputs", extra="xarray")
    dsa: Any = require("dask.array", feature="Dask-backed inputs", extra="xarray")

    route = _route(reader, request)
    options = route.options
    resolved = reader.statistics(options.normalise, options.masking)
    halo = fill_margin(reach(route.pool, options))
    # an axis no longer than the halo (or in one chunk already) is computed whole: no halo along it
    whole = [axis for axis in (1, 2) if data.shape[axis] <= halo or len(data.chunks[axis]) == 1]
    if whole:
        data = data.rechunk(dict.fromkeys(whole, -1))
    halos = tuple(0 if axis in whole else halo for axis in (1, 2))
    padded = dsa.overlap.overlap(data, depth={0: 0, 1: halos[0], 2: halos[1]}, boundary="none")
    # a block is its core plus a halo on each side that has a neighbour (dask may have rechunked to fit the halo)
    cores = tuple(
        tuple(size - depth * (i > 0) - depth * (i < len(sizes) - 1) for i, size in enumerate(sizes))
        for sizes, depth in zip(padded.chunks[1:], halos, strict=True)
    )
    s = request.scale
    row_chunks, col_chunks = (tuple(c * s for c in sizes) for sizes in cores)
    common = {"request": request, "resolved": resolved, "nodata": reader.nodata, "scene_name": reader.name}
    common |= {"shape": reader.shape, "cores": cores, "halos": halos, "wavelengths": reader.wavelengths}
    weight = None
    if options.stage != "coarse":
        sums = ((2,), (1,) * len(cores[0]), (1,) * len(cores[1]))
        parts = dsa.map_blocks(_block_angles, padded, dtype=np.float64, chunks=sums, **common)
        total, count = (float(v) for v in dask.compute(parts[0].sum(), parts[1].sum())[:2])
        weight = min(total / max(count, 1.0), 1.0)
    out_dtype = np.dtype(reader.dtype if options.units == "source" else np.float32)
    return dsa.map_blocks(
        _block_result, padded, dtype=out_dtype, chunks=(data.chunks[0], row_chunks, col_chunks), weight=weight,
        **common,
    )  # fmt: skip


def _block_route(common: dict[str, Any]) -> Route:
    """The block functions' view of a run: its options (with the weights ``auto`` chose), pool and runner."""
    upscaler = _upscaler(common["request"])
    return upscaler.route(upscaler.options.choose_weights(common["shape"][0], common["wavelengths"]))


def _block_scene(block: np.ndarray, block_info: Any, common: dict[str, Any], route: Route) -> tuple[Scene, Window]:
    """The block (with its halo) as a scene read with the whole scene's statistics, and where its core lies."""
    _, i, j = block_info[0]["chunk-location"]
    (row_halo, col_halo), cores = common["halos"], common["cores"]
    core = Window(row_halo if i > 0 else 0, col_halo if j > 0 else 0, cores[0][i], cores[1][j])
    reader = ArrayReader(block, common["scene_name"], common["nodata"], common["wavelengths"])
    reader.seed(route.options.normalise, route.options.masking, common["resolved"])
    return reader.load(route.options.normalise, masking=route.options.masking), core


def _coarse_pair(scene: Scene, route: Route) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
    """The block's clipped coarse ×s result (all bands) and, for ``dual``, its clipped ×s/2 one, as
    :func:`~dualsr_deploy.infer.compute.compute_scene` computes them."""
    options = route.options
    route.prepare_scene(scene)
    device = route.pool.backend(options.scale, _widest(scene)).device
    coarse = compute_scene(route.runner, replace(options, stage="coarse"), scene, device).coarse
    low = None
    if options.stage == "dual":
        half = replace(options, stage="coarse", scale=options.scale // 2)
        low = compute_scene(route.runner, half, scene, device).coarse
    return coarse, low, device


def _network(scene: Scene) -> list[int]:
    return [i for a, b in plan_segments(scene)[0] for i in range(a, b)]


def _guide(scene: Scene, low: torch.Tensor | None, device: Any) -> torch.Tensor:
    """The fine stage's guide for the network bands: the ×s/2 result (dual) or the filled LR input (backproject)."""
    if low is not None:
        return low[_network(scene)]
    from dualsr_deploy.data.validity import fill_invalid

    valid = scene.valid if scene.valid is not None else np.ones(scene.cube.shape[1:], dtype=bool)
    return torch.from_numpy(fill_invalid(scene.cube, valid)).to(device)[_network(scene)]


def _block_angles(block: np.ndarray, block_info: Any = None, **common: Any) -> np.ndarray:
    """``[[[Σ angle]], [[count]]]`` over the valid pixels of the block's core, at the guide's resolution."""
    route = _block_route(common)
    scene, core = _block_scene(block, block_info, common, route)
    coarse, low, device = _coarse_pair(scene, route)
    guide = _guide(scene, low, device)
    angles = sam_angles(coarse[_network(scene)], guide).cpu().numpy()
    g = guide.shape[1] // scene.cube.shape[1]  # guide pixels per LR pixel
    keep = nearest_up(np.ones(scene.cube.shape[1:], dtype=bool) if scene.valid is None else scene.valid, g)
    inside = np.zeros_like(keep)
    inside[core.top * g : (core.top + core.height) * g, core.left * g : (core.left + core.width) * g] = True
    selected = angles[keep & inside]
    return np.asarray([selected.sum(), selected.size], dtype=np.float64).reshape(2, 1, 1)


def _block_result(block: np.ndarray, block_info: Any = None, weight: float | None = None, **common: Any) -> np.ndarray:
    """The block's output core in the input's units: coarse, or the back-projection with the scene's weight."""
    route = _block_route(common)
    options = route.options
    scene, core = _block_scene(block, block_info, common, route)
    coarse, low, device = _coarse_pair(scene, route)
    result = coarse
    if options.stage != "coarse" and weight is not None:
        network = _network(scene)
        guide = _guide(scene, low, device)
        high = coarse[network]
        fine = project(high, guide, downsample(high, guide), weight)
        floor = floor_tensor(scene.meta.band_floor, device)
        result = coarse.clone()
        result[network] = clip_range(fine, floor[network] if floor is not None else None) if options.clip else fine
    raw = _raw(scene, result.cpu().numpy(), options)
    s = options.scale
    return raw[:, core.top * s : (core.top + core.height) * s, core.left * s : (core.left + core.width) * s]


__all__ = ["ArrayReader", "Request", "in_memory", "lazy"]
