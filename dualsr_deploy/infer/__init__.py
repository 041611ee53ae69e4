"""Archive inference: :func:`run_archive` super-resolves every scene of an archive (``dualsr infer``).

The data path, one module per step: :mod:`~.options` (what was asked), :mod:`~.plan` (what happens to each
scene), :mod:`~.pool` (the backends, opened once), :mod:`~.tiling` and :mod:`~.batching` (tiles with halos,
batched through a backend), :mod:`~.fine` (the fine stage), :mod:`~.pipeline` (one scene: read → coarse → fine →
write), :mod:`~.streaming` (scenes over the memory budget), :mod:`~.executors` (local threads or Ray workers),
:mod:`~.manifest` (one record per scene) and :mod:`~.run` (``run_archive``, which plans and picks the executor).
:class:`~.upscaler.Upscaler` gives the tensors of one cube instead of files.
"""

from dualsr_deploy.errors import RunError
from dualsr_deploy.infer.options import BackendSpec, Event, InferOptions
from dualsr_deploy.infer.run import ArchiveReport, run_archive
from dualsr_deploy.infer.upscaler import Stages, Upscaler

__all__ = ["ArchiveReport", "BackendSpec", "Event", "InferOptions", "RunError", "Stages", "Upscaler", "run_archive"]
