"""What processing one scene takes, wherever it runs (the local executor's threads, a Ray worker): the archive,
the options, the backend pool and tile runner, and how a scene's manifest record and output attributes are made."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from dualsr_deploy._version import __version__
from dualsr_deploy.data.archive import Archive
from dualsr_deploy.data.scene import SceneMeta
from dualsr_deploy.errors import DualSRError
from dualsr_deploy.infer.batching import TileRunner
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.infer.plan import PlannedScene
from dualsr_deploy.infer.pool import BackendPool

# What a scene's failure can raise: recorded as that scene's, never the run's.
SCENE_ERRORS = (DualSRError, RuntimeError, ValueError, OSError)


@dataclass
class SceneContext:
    """``worker`` names the process in the records (cluster runs).

    With ``--weights auto`` each scene says which shipped family it takes (:func:`~dualsr_deploy.infer.plan
    .scene_family`); :meth:`for_scene` gives the context whose pool holds that family's weights, made on first need
    and kept for the run (this context serves cave, auto's fallback)."""

    archive: Archive
    options: InferOptions
    pool: BackendPool
    runner: TileRunner
    worker: str | None = None
    _routes: dict[str, SceneContext] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def for_scene(self, planned: PlannedScene) -> SceneContext:
        """The context that runs ``planned`` with the weights chosen for it."""
        options = self.options.for_weights(planned.weights)
        if options is None or planned.weights is None:
            return self
        family = planned.weights.family
        with self._lock:
            if family not in self._routes:
                pool = BackendPool(options.backend, say=self.pool.say)
                runner = TileRunner(pool, options, self.runner.report)
                self._routes[family] = SceneContext(self.archive, options, pool, runner, self.worker)
            return self._routes[family]

    @property
    def opened(self) -> list[str]:
        """The backends opened for every family the run used."""
        return self.pool.opened + [name for route in self._routes.values() for name in route.pool.opened]

    def close_routes(self) -> None:
        for route in self._routes.values():
            route.pool.close()

    def record(self, planned: PlannedScene, status: str, **facts: Any) -> SceneRecord:
        return scene_record(self.options, planned, status, worker=self.worker, **facts)

    def output_attrs(self) -> dict[str, str]:
        """What every output of the run says about how it was made."""
        options = self.options
        attrs = {
            "model": f"CoarSR ×{options.scale}",
            "scale": str(options.scale),
            "stage": options.stage,
            "backend": options.backend.label,
            "weights": options.backend.weights_label(options.scale),
            "weights_sha256": self.pool.model(options.scale).info.sha256,
            "dualsr_version": __version__,
        }
        if options.stage == "dual":
            attrs["weights_half_sha256"] = self.pool.model(options.scale // 2).info.sha256
        return attrs


def scene_record(
    options: InferOptions, planned: PlannedScene, status: str, *, notes: list[str] | None = None, **facts: Any
) -> SceneRecord:
    """The manifest record of a planned scene that ended with ``status`` (``facts``: the other fields)."""
    entry = planned.entry
    spec = options.backend
    choice = planned.weights
    return SceneRecord(
        entry.name,
        str(entry.path),
        status,
        input_sha256=planned.digest,
        backend=options.backend.label,
        precision_choice=options.backend.precision_choice or None,
        weights=choice.family if choice is not None else spec.weights_label(options.scale),
        weights_choice=f"auto: {choice.reason}" if choice is not None else None,
        stage=options.stage,
        stage_choice=options.stage_choice or None,
        scale=options.scale,
        shape_in=list(entry.shape) if entry.shape else None,
        mode=planned.mode,
        tiles=planned.tiles,
        notes=([planned.reason] if planned.reason and status == "ok" else []) + (notes or []),
        **facts,
    )


def output_meta(meta: SceneMeta, scale: int) -> SceneMeta:
    """An output's metadata: the input's, with its georeferencing scaled to the output's pixels."""
    georef = meta.georef.scaled(scale) if meta.georef is not None else None
    return meta.replace(georef=georef)


__all__ = ["SCENE_ERRORS", "SceneContext", "output_meta", "scene_record"]
