"""``Upscaler``: what a run computes for one in-memory LR cube, for callers that want the tensors (``dualsr eval``,
``dualsr demo``) instead of files."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dualsr_deploy.data.normalise import band_floor
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.infer.compute import compute_scene
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.infer.quality import reach
from dualsr_deploy.infer.routes import Route, Router
from dualsr_deploy.weights import FamilyChoice


@dataclass
class Stages:
    """One LR cube super-resolved: the clipped coarse result and, for the fine stages, the refined one."""

    coarse: torch.Tensor
    fine: torch.Tensor | None
    sam_weight: float | None


class Upscaler:
    """``Upscaler(options)(lr)`` → :class:`Stages` for ``lr (C, h, w)`` float32 in [0, 1], tiled and batched as
    :func:`~dualsr_deploy.infer.run.run_archive` does it. Close it (or use it as a context manager).

    With ``--weights auto`` (``options.backend.family``), ``options.choose_weights`` says which shipped family a cube
    takes and ``weights=`` runs it with that family's weights, through the same
    :class:`~dualsr_deploy.infer.routes.Router` as the runs (each family's backends opened on first need, kept
    open). Each cube's artefacts are prepared before it runs."""

    def __init__(self, options: InferOptions) -> None:
        self.options = options
        self.router = Router(options)
        self.pool = self.router.base.pool
        self.runner = self.router.base.runner

    def route(self, choice: FamilyChoice | None = None) -> Route:
        """The options, pool and runner that run with the weights ``--weights auto`` chose (None: the run's own)."""
        return self.router.route(choice)

    def __call__(
        self, lr: torch.Tensor, valid: np.ndarray | None = None, *, weights: FamilyChoice | None = None
    ) -> Stages:
        """``valid``: ``(h, w)`` bool, the LR pixels to trust (None: all); the others are filled for the network
        and the fine stage's SAM weight is averaged over valid pixels (:mod:`dualsr_deploy.infer.compute`).
        ``weights``: what ``options.choose_weights`` picked, when the run's weights are ``auto``."""
        route = self.route(weights)
        options = route.options
        route.prepare([lr.shape[0]])
        # each band's minimum over the trusted pixels, on the cube's own device: as the readers set the clip floors
        keep = torch.from_numpy(valid).to(lr.device) if valid is not None and valid.any() else None
        minima = lr[:, keep].amin(dim=1) if keep is not None else lr.amin(dim=(1, 2))
        floor = band_floor(minima.double().cpu().numpy(), 1.0)
        partial = valid if valid is not None and not valid.all() else None
        meta = SceneMeta("tensor", "tensor", band_floor=floor)
        scene = Scene("scene", lr.cpu().numpy().astype(np.float32), meta, valid=partial)
        device = route.pool.backend(options.scale, lr.shape[0]).device
        done = compute_scene(route.runner, options, scene, device)
        return Stages(done.coarse, None if options.stage == "coarse" else done.result, done.sam_weight)

    def reach_for(self, weights: FamilyChoice | None = None) -> int:
        """LR pixels around an output pixel's source that went into it (see :mod:`dualsr_deploy.infer.quality`)."""
        route = self.route(weights)
        return reach(route.pool, route.options)

    @property
    def reach(self) -> int:
        return self.reach_for(None)

    @property
    def label(self) -> str:
        return self.options.backend.label

    def close(self) -> None:
        self.router.close()

    def __enter__(self) -> Upscaler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Stages", "Upscaler"]
