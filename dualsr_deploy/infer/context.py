"""What processing one scene takes, wherever it runs (the local executor's threads, a Ray worker): the archive,
the options, the backend pool and tile runner, and how a scene's manifest record and output attributes are made."""

from __future__ import annotations

from dataclasses import dataclass
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
    """``worker`` names the process in the records (cluster runs)."""

    archive: Archive
    options: InferOptions
    pool: BackendPool
    runner: TileRunner
    worker: str | None = None

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
    return SceneRecord(
        entry.name,
        str(entry.path),
        status,
        input_sha256=planned.digest,
        backend=options.backend.label,
        precision_choice=options.backend.precision_choice or None,
        stage=options.stage,
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
