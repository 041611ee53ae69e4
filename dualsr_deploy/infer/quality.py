"""Which output pixels to trust (``--qa``): a per-pixel quality layer at the output's resolution, written beside
each output in its own format (``<output>_qa.<suffix>``, uint8):

- ``0`` **invalid**: the nearest LR source pixel was no-data (the output holds the no-data value there);
- ``1`` **filled**: valid, but the network's receptive field around its LR source pixel reached an invalid pixel,
  so filled values went into it;
- ``2`` **clean**: computed from valid input alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.data.validity import nearest_up
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.infer.pool import BackendPool
from dualsr_deploy.infer.tiling import receptive_radius

INVALID, FILLED, CLEAN = 0, 1, 2
LEGEND = "0 invalid (no-data), 1 valid but computed from filled input, 2 clean"


def quality_layer(valid: np.ndarray | None, shape: tuple[int, int], scale: int, radius: int) -> np.ndarray:
    """``(s·H, s·W)`` uint8 quality classes from the LR validity ``valid`` ``(H, W)`` (None: all valid) and the
    receptive radius in LR pixels of everything that ran (models and fine stage)."""
    if valid is None or valid.all():
        return np.full((scale * shape[0], scale * shape[1]), CLEAN, dtype=np.uint8)
    from scipy.ndimage import maximum_filter

    near_invalid = maximum_filter((~valid).astype(np.uint8), size=2 * radius + 1, mode="constant") > 0
    lr = np.where(valid, np.where(near_invalid, FILLED, CLEAN), INVALID).astype(np.uint8)
    return nearest_up(lr, scale)


def reach(pool: BackendPool, options: InferOptions) -> int:
    """LR pixels around an output pixel's source that went into it: the models' receptive radius, and the fine
    stage's resize kernels (2 LR pixels) when it runs."""
    radius = max(receptive_radius(pool.model(scale).config) for scale in options.scales)
    return radius + (2 if options.stage != "coarse" else 0)


def counts(layer: np.ndarray) -> dict[str, int]:
    return {
        name: int(np.count_nonzero(layer == value))
        for name, value in (("invalid", INVALID), ("filled", FILLED), ("clean", CLEAN))
    }


def qa_path(output: Path) -> Path:
    """``x.tif`` → ``x_qa.tif``; ENVI ``x.hdr`` → ``x_qa.hdr``; a COG ``x.cog.tif`` → ``x_qa.cog.tif``."""
    from dualsr_deploy.data.formats.geotiff import COG_SUFFIX

    if output.name.lower().endswith(COG_SUFFIX):
        return output.with_name(f"{output.name[: -len(COG_SUFFIX)]}_qa{output.name[-len(COG_SUFFIX) :]}")
    return output.with_name(f"{output.stem}_qa{output.suffix}")


def qa_scene(layer: np.ndarray, output: Scene) -> Scene:
    """The layer as a one-band scene with the output's georeferencing, written in its own units (uint8)."""
    meta = SceneMeta(
        source=output.meta.source,
        origin=output.meta.origin,
        format=output.meta.format,
        dtype="uint8",
        georef=output.meta.georef,
        attrs={"dualsr_quality": LEGEND},
    )
    return Scene(f"{output.name}_qa", layer[None].astype(np.float32), meta)


__all__ = ["CLEAN", "FILLED", "INVALID", "LEGEND", "counts", "qa_path", "qa_scene", "quality_layer", "reach"]
