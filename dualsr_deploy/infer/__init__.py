"""Archive inference: :func:`run_archive` super-resolves every scene of an archive (``dualsr infer``)."""

from dualsr_deploy.infer.engines import EngineSpec
from dualsr_deploy.infer.run import ArchiveReport, Event, InferOptions, RunError, run_archive

__all__ = ["ArchiveReport", "EngineSpec", "Event", "InferOptions", "RunError", "run_archive"]
