"""The backends a run opens: one per (scale, band count) for backends whose artefacts are fixed to a band count, one
per scale for those that run the folded model itself, each opened on first use and kept for the whole run. The pool
only opens backends: the weights and artefacts it opens them with are prepared first (:mod:`.prepare`), and asking
for one never prepared is refused. Backends are built by :func:`dualsr_deploy.backends.create`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from dualsr_deploy.backends import Backend, create
from dualsr_deploy.infer.options import BackendSpec
from dualsr_deploy.infer.prepare import Model, Models, RunArtefacts


class BackendPool:
    """Opens backends on demand, one per (scale, bands) (one per scale where the model runs itself), and closes
    them all. :meth:`prepare` readies what they need; :attr:`artefacts` is that store."""

    def __init__(self, spec: BackendSpec, *, say: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.kind = spec.kind
        self.models = Models(spec)
        self.artefacts = RunArtefacts(spec, self.models, say or (lambda _message: None))
        self._backends: dict[tuple[int, int | None], Backend] = {}
        self._lock = threading.Lock()

    def model(self, scale: int) -> Model:
        return self.models[scale]

    def prepare(self, needs: Iterable[tuple[int, int]], *, keep_going: bool = False, for_workers: bool = False) -> None:
        """Make sure the weights and artefacts of every (scale, bands) in ``needs`` exist and are verified (see
        :meth:`RunArtefacts.prepare`)."""
        self.artefacts.prepare(needs, keep_going=keep_going, for_workers=for_workers)

    def backend(self, scale: int, bands: int) -> Backend:
        key = (scale, self.artefacts.artefact_bands(bands) if self.kind.fixed_bands else None)
        with self._lock:
            if key not in self._backends:
                spec = self.spec
                backend = create(
                    spec.backend,
                    core=self.model(scale).core if self.kind.artefact is None else None,
                    artefact=self.artefacts.prepared(scale, bands),
                    device=spec.device,
                    precision=spec.precision,
                    compile=spec.compile,
                    threads=spec.cpu_threads,
                )
                backend.open()
                self._backends[key] = backend
            return self._backends[key]

    @property
    def opened(self) -> list[str]:
        return [backend.capabilities.name for backend in self._backends.values()]

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()


__all__ = ["BackendPool", "Model"]
