"""What processing one scene takes, wherever it runs (the local executor's threads, a Ray worker): the archive,
the weights router and the route of the scene at hand (its options, backend pool and tile runner), and how a scene
is prepared for (its artefacts) and what every output says about how it was made."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from dualsr_deploy._version import __version__
from dualsr_deploy.data.archive import Archive
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.infer.batching import TileRunner
from dualsr_deploy.infer.manifest import SceneRecord, Status
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.infer.plan import PlannedScene
from dualsr_deploy.infer.pool import BackendPool
from dualsr_deploy.infer.records import SceneFacts, finished_record, scene_record
from dualsr_deploy.infer.routes import Route, Router


@dataclass(frozen=True)
class SceneContext:
    """``route``: the weights the scene at hand runs with (:meth:`for_scene`; the run's own by default).
    ``worker`` names the process in the records (cluster runs)."""

    archive: Archive
    router: Router
    route: Route
    worker: str | None = None

    @classmethod
    def of(cls, archive: Archive, router: Router, worker: str | None = None) -> SceneContext:
        return cls(archive, router, router.base, worker)

    @property
    def options(self) -> InferOptions:
        return self.route.options

    @property
    def pool(self) -> BackendPool:
        return self.route.pool

    @property
    def runner(self) -> TileRunner:
        return self.route.runner

    def for_scene(self, planned: PlannedScene) -> SceneContext:
        """The context that runs ``planned`` with the weights chosen for it (``planned.weights``)."""
        route = self.router.route(planned.weights)
        return self if route is self.route else replace(self, route=route)

    def prepare(self, todo: list[PlannedScene], *, for_workers: bool = False) -> None:
        """Prepare, then run: the artefacts of every (scale, band count) the planned scenes need, per weights
        family. One that cannot be made fails the scenes needing it, when they start; what no scene can get past
        (a missing extra, weights an artefact was not made from) stops the run here. ``for_workers``: the scenes
        run on a cluster's workers, which build what is tied to their own GPU (TensorRT plans) themselves."""
        needs: dict[int, tuple[Route, set[int]]] = {}
        for planned in todo:
            if planned.entry.shape is not None:
                route = self.router.route(planned.weights)
                needs.setdefault(id(route), (route, set()))[1].add(planned.entry.shape[0])
        for route, bands in needs.values():
            route.prepare(bands, keep_going=True, for_workers=for_workers)

    def prepare_scene(self, scene: Scene) -> None:
        """What a read scene needs beyond the plan: the band counts of the segments its bad bands split it into."""
        self.route.prepare_scene(scene)

    def record(self, planned: PlannedScene, status: Status, **facts: Any) -> SceneRecord:
        """The record of a scene that ended with ``status`` (see :func:`~dualsr_deploy.infer.records.scene_record`)."""
        return scene_record(self.options, planned, status, worker=self.worker, **facts)

    def finished(self, planned: PlannedScene, facts: SceneFacts, **fields: Any) -> SceneRecord:
        """The ``ok`` record of a computed scene (see :func:`~dualsr_deploy.infer.records.finished_record`)."""
        return finished_record(self.options, planned, facts, worker=self.worker, **fields)

    @property
    def opened(self) -> list[str]:
        """The backends opened for every family the run used."""
        return self.router.opened

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


def output_meta(meta: SceneMeta, scale: int) -> SceneMeta:
    """An output's metadata: the input's, with its georeferencing scaled to the output's pixels."""
    georef = meta.georef.scaled(scale) if meta.georef is not None else None
    return meta.replace(georef=georef)


__all__ = ["SceneContext", "output_meta"]
