"""``Upscaler``: what a run computes for one in-memory LR cube, for callers that want the tensors (``dualsr eval``,
``dualsr demo``) instead of files."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.infer.batching import TileRunner
from dualsr_deploy.infer.fine import finish_stage
from dualsr_deploy.infer.masked import super_resolve
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.infer.pool import BackendPool
from dualsr_deploy.infer.quality import reach


@dataclass
class Stages:
    """One LR cube super-resolved: the clipped coarse result and, for the fine stages, the refined one."""

    coarse: torch.Tensor
    fine: torch.Tensor | None
    sam_weight: float | None


class Upscaler:
    """``Upscaler(options)(lr)`` → :class:`Stages` for ``lr (C, h, w)`` float32 in [0, 1], tiled and batched as
    :func:`~dualsr_deploy.infer.run.run_archive` does it. Close it (or use it as a context manager)."""

    def __init__(self, options: InferOptions) -> None:
        self.options = options
        self.pool = BackendPool(options.backend)
        self.runner = TileRunner(self.pool, options, lambda _event: None)

    def __call__(self, lr: torch.Tensor, valid: np.ndarray | None = None) -> Stages:
        """``valid``: ``(h, w)`` bool, the LR pixels to trust (None: all); the others are filled for the network
        and the fine stage's SAM weight is averaged over valid pixels (:mod:`dualsr_deploy.infer.masked`)."""
        if valid is not None and not valid.all():
            return self._masked(lr, valid)
        options, scale = self.options, self.options.scale
        device = self.pool.backend(scale, lr.shape[0]).device
        cube = lr.to(device)
        (high,) = self.runner.coarse(scale, [cube], ["scene"])
        if options.stage == "coarse":
            return Stages(high.clamp(0, 1), None, None)
        low = self.runner.coarse(scale // 2, [cube], ["scene"])[0] if options.stage == "dual" else None
        fine, weight = finish_stage(options.stage, options.clip, high, low, cube)
        return Stages(high.clamp(0, 1), fine, weight)

    def _masked(self, lr: torch.Tensor, valid: np.ndarray) -> Stages:
        scene = Scene("scene", lr.cpu().numpy().astype(np.float32), SceneMeta("tensor", "tensor"), valid=valid)
        device = self.pool.backend(self.options.scale, lr.shape[0]).device
        coarse, result, weight, _notes = super_resolve(self.runner, self.options, scene, device)
        return Stages(coarse, None if self.options.stage == "coarse" else result, weight)

    @property
    def reach(self) -> int:
        """LR pixels around an output pixel's source that went into it (see :mod:`dualsr_deploy.infer.quality`)."""
        return reach(self.pool, self.options)

    @property
    def label(self) -> str:
        return self.options.backend.label

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Upscaler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Stages", "Upscaler"]
