"""The weights router: ``--weights`` (a family, a file, or ``auto``) → for each scene the family its weights come
from and why (:meth:`InferOptions.choose_weights <dualsr_deploy.infer.options.InferOptions.choose_weights>`) → the
:class:`Route` that runs it: its options, backend pool and tile runner, one per family, made on first need and kept
for the run. Runs (:class:`~dualsr_deploy.infer.context.SceneContext`), :class:`~dualsr_deploy.infer.upscaler
.Upscaler` (``eval``, ``demo``) and the xarray entry points all route through :class:`Router`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dualsr_deploy.data.scene import Scene
from dualsr_deploy.infer.batching import TileRunner
from dualsr_deploy.infer.compute import plan_segments
from dualsr_deploy.infer.options import Event, InferOptions
from dualsr_deploy.infer.pool import BackendPool
from dualsr_deploy.weights import FamilyChoice


@dataclass
class Route:
    """What runs the scenes of one weights family: ``choice`` is what ``--weights auto`` chose (None: the run's own
    weights)."""

    options: InferOptions
    pool: BackendPool
    runner: TileRunner
    choice: FamilyChoice | None = None

    def prepare(self, band_counts: Iterable[int], *, keep_going: bool = False, for_workers: bool = False) -> None:
        """Prepare, then run: the weights and artefacts of every scale the stage runs, for each band count."""
        needs = [(s, c) for s in self.options.scales for c in band_counts]
        self.pool.prepare(needs, keep_going=keep_going, for_workers=for_workers)

    def prepare_scene(self, scene: Scene) -> None:
        """What a read scene needs: the band count of each run of good bands it is split into (the whole scene's
        when it has no bad bands)."""
        network, _short = plan_segments(scene)
        self.prepare({b - a for a, b in network})


class Router:
    """Routes scenes to the :class:`Route` of the weights chosen for them (see the module docstring)."""

    def __init__(
        self,
        options: InferOptions,
        *,
        report: Callable[[Event], None] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self.report = report or (lambda _event: None)
        self.say = say or (lambda _text: None)
        self.base = self._make(options, None)
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()

    def _make(self, options: InferOptions, choice: FamilyChoice | None) -> Route:
        pool = BackendPool(options.backend, say=self.say)
        return Route(options, pool, TileRunner(pool, options, self.report), choice)

    def route(self, choice: FamilyChoice | None) -> Route:
        """The route of ``choice`` (None, or a choice the run's own weights serve: :attr:`base`)."""
        options = self.options.for_weights(choice)
        if options is None or choice is None:
            return self.base
        with self._lock:
            if choice.family not in self._routes:
                self._routes[choice.family] = self._make(options, choice)
                for mine, base in (
                    (options.backend.backend_choice, self.options.backend.backend_choice),
                    (options.backend.precision_choice, self.options.backend.precision_choice),
                ):
                    if mine != base:
                        self.say(f"{choice.family} weights: {mine}")
            return self._routes[choice.family]

    @property
    def routes(self) -> list[Route]:
        return [self.base, *self._routes.values()]

    @property
    def opened(self) -> list[str]:
        """The backends opened for every family used."""
        return [name for route in self.routes for name in route.pool.opened]

    def close(self) -> None:
        for route in self.routes:
            route.pool.close()


__all__ = ["Route", "Router"]
