"""Prepare, then run: the weights a run needs, read once (:class:`Models`), and every artefact its backend runs
(:class:`RunArtefacts`: ONNX graphs, OpenVINO IR, TensorRT plans, one per scale and band count), found in the
artefacts folder and checked against those weights (hashes, the weights they were exported from), or exported
there (graphs on any machine, plans where TensorRT and a GPU are present, IR where OpenVINO is installed), before
any scene computes. The local and the Ray executor prepare the same way (``run_archive``, before the executor
starts); a scene whose bad bands split it into segments of other band counts prepares those when it is read. The
backend pool (:mod:`dualsr_deploy.infer.pool`) then only opens what was prepared."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dualsr_deploy.archs.coarsr import CoarSRConfig
from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.artefacts import (
    check_ir,
    graph_filename,
    ir_path_for,
    plan_path_for,
    read_manifest,
    variant_name,
    verify_artefact,
)
from dualsr_deploy.backends.kinds import CALIBRATED_PRECISIONS
from dualsr_deploy.checkpoint import CheckpointInfo, read_checkpoint
from dualsr_deploy.errors import RUN_ERRORS, SCENE_ERRORS, CheckpointError, ExportError
from dualsr_deploy.infer.options import BackendSpec


@dataclass
class Model:
    """One scale's weights: the folded core (for torch and for sizing halos) and what the file said."""

    core: FoldedCoarSR
    info: CheckpointInfo
    path: Path

    @property
    def config(self) -> CoarSRConfig:
        return self.core.config


class Models:
    """The run's weights by scale, read (and checked to be the scale asked for) once."""

    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self._models: dict[int, Model] = {}
        self._lock = threading.Lock()

    def __getitem__(self, scale: int) -> Model:
        with self._lock:
            if scale not in self._models:
                path = self.spec.checkpoint(scale)
                network, info = read_checkpoint(path)
                if info.scale != scale:
                    raise CheckpointError(f"{path}: a ×{info.scale} model, given for ×{scale}")
                self._models[scale] = Model(fold_coarsr(network, info.neighbour_rule), info, Path(path))
            return self._models[scale]


class RunArtefacts:
    """The artefacts of one backend spec, prepared per (scale, band count): :meth:`prepare` makes sure each exists
    and is verified, :meth:`prepared` hands it to the pool (and refuses one never prepared)."""

    def __init__(self, spec: BackendSpec, models: Models, say: Callable[[str], None]) -> None:
        self.spec, self.models, self.say = spec, models, say
        self.kind = spec.kind
        self._ready: dict[tuple[int, int], Path] = {}
        self._failed: dict[tuple[int, int], Exception] = {}
        self._lock = threading.Lock()

    def prepare(self, needs: Iterable[tuple[int, int]], *, keep_going: bool = False, for_workers: bool = False) -> None:
        """Make sure the artefact of every (scale, bands) in ``needs`` exists and is verified. ``keep_going``: an
        artefact that cannot be made or verified (a scene's error, not a run's: :data:`~dualsr_deploy.errors
        .RUN_ERRORS` are raised at once) is remembered and raised again when asked for (:meth:`prepared`, or
        :meth:`prepare` for a scene), never tried again in the run, so that only the scenes needing it fail.
        ``for_workers``: for other machines (a cluster's workers): what can be made anywhere — a TensorRT plan's
        graph; the plan itself is built by each worker for its own GPU."""
        if self.kind.artefact is None:
            for scale, _bands in needs:
                self.models[scale]  # the weights are what torch runs: read and checked here, before the run
            return
        for key in sorted({(scale, self.artefact_bands(bands)) for scale, bands in needs}):
            with self._lock:
                if key in self._ready:
                    continue
                if key in self._failed:  # tried once this run: every scene needing it fails the same way, at once
                    if keep_going:
                        continue
                    raise self._failed[key]
                try:
                    if for_workers and self.kind.artefact == "plan":
                        self.graph(*key, self.spec.precision)  # not ready here: the worker's plan is its own
                        continue
                    self._ready[key] = self._make(*key)
                except RUN_ERRORS:
                    raise
                except SCENE_ERRORS as exc:
                    self._failed[key] = exc
                    if not keep_going:
                        raise

    def prepared(self, scale: int, bands: int) -> Path | None:
        """The artefact for (scale, bands), prepared before (None: the backend runs the model itself)."""
        if self.kind.artefact is None:
            return None
        key = (scale, self.artefact_bands(bands))
        with self._lock:
            if key in self._failed:
                raise self._failed[key]
            if key not in self._ready:
                raise RuntimeError(
                    f"no ×{scale} {bands}-band {self.kind.artefact} was prepared for the {self.kind.name} backend: "
                    "prepare the artefacts before running (RunArtefacts.prepare)"
                )
            return self._ready[key]

    def artefact_bands(self, bands: int) -> int:
        """The band count of the artefact that runs a ``bands``-band cube: its own for a whole-cube graph; for a
        band-chunk graph, the chunk (:meth:`chunk`). A chunk graph takes ``chunk`` bands a call and carries the scan
        from call to call, so one graph runs every band count from the chunk up: the segments of 95 and 188 bands
        an EMIT granule's bad bands leave run the same graph, exported and compiled once."""
        chunk = self.chunk(bands)
        return bands if chunk is None else chunk

    def _make(self, scale: int, bands: int) -> Path:
        if self.kind.artefact == "graph":
            return self.graph(scale, bands, self.spec.precision)
        if self.kind.artefact == "ir":
            return self.ir(scale, bands)
        return self.plan(scale, bands)

    def graph(self, scale: int, bands: int, precision: str) -> Path:
        """The ONNX graph of the ×``scale`` ``bands``-band model in the artefacts folder, checked against this
        run's weights, exported first if absent: a band-chunk graph for ONNX Runtime and OpenVINO on a CPU
        (:meth:`chunk`), else the whole-cube graph."""
        model = self.models[scale]
        chunk = self.chunk(bands)
        name = graph_filename(scale, bands, precision, chunk)
        legacy = self.spec.artefacts_dir / variant_name(scale, bands) / name  # folders made before weights keyed them
        if legacy.is_file() and read_manifest(legacy).get("checkpoint_sha256") == model.info.sha256:
            verify_artefact(legacy)
            return legacy
        graph = self.spec.artefacts_dir / variant_name(scale, bands, model.info.sha256) / name
        if graph.is_file() and graph.with_name(graph.name + ".json").is_file():
            verify_artefact(graph)
            self._check_source(graph, model, scale, bands)
            return graph
        if precision in CALIBRATED_PRECISIONS:  # made only by a calibration that passed the rule, never on the fly
            raise ExportError(
                f"no ×{scale} {bands}-band INT8 graph of {model.path.name} in {self.spec.artefacts_dir}: make one with "
                f"dualsr export --int8 --calibrate STORE --weights {model.path} --scale {scale} --bands {bands} "
                f"--engines {self.spec.artefacts_dir} (written only where it passes the quality rule)"
            )
        self._export(scale, bands, model, tensorrt="off", precision=precision, band_chunk=chunk)
        return graph

    def ir(self, scale: int, bands: int) -> Path:
        """The OpenVINO IR of the ×``scale`` ``bands``-band model, converted from the fp32 graph if absent; checked
        against its hashes and this run's weights."""
        from dualsr_deploy.export.openvino import onnx2ir

        graph = self.graph(scale, bands, self.kind.artefact_precision(self.spec.precision))
        ir = ir_path_for(graph)
        if not (ir.is_file() and ir.with_name(ir.name + ".json").is_file()):
            self.say(f"no ×{scale} {bands}-band OpenVINO IR in {self.spec.artefacts_dir}: converting {graph.name}")
            ir = onnx2ir(graph)
        check_ir(ir)
        self._check_source(ir, self.models[scale], scale, bands)
        return ir

    def plan(self, scale: int, bands: int) -> Path:
        """The TensorRT plan of the ×``scale`` ``bands``-band model for this GPU, built from the graph (checked
        against this run's weights) if absent; its manifest and engine are checked where it is opened, against the
        running GPU and the graph it was built from."""
        from dualsr_deploy.runtimes import gpu_identity, require_tensorrt

        require_tensorrt()
        graph = self.graph(scale, bands, self.spec.precision)
        plan = plan_path_for(graph, gpu_identity())
        if not plan.is_file():
            self._export(scale, bands, self.models[scale], tensorrt="require")
        return plan

    def _check_source(self, artefact: Path, model: Model, scale: int, bands: int) -> None:
        """Refuse an artefact whose manifest names other weights than its folder's name (a file copied or changed
        by hand), with the command that makes the right one."""
        built_from = read_manifest(artefact).get("checkpoint_sha256")
        if built_from != model.info.sha256:
            raise CheckpointError(
                f"{artefact} was exported from other weights (SHA-256 {str(built_from)[:12]}…) than this run uses "
                f"({model.path.name}, {model.info.sha256[:12]}…); remove {artefact.parent} and run again (it is "
                f"exported before the run needs it), or run: dualsr export --checkpoint {model.path} --scale "
                f"{scale} --bands {bands} --engines {self.spec.artefacts_dir}{self._export_form(bands)}"
            )

    def chunk(self, bands: int) -> int | None:
        """Bands a call of the ``bands``-band graph this run makes (:attr:`BackendSpec.band_chunk`, at most ``bands``:
        a 5-band scene's graph takes 5 bands a call, not 8 of which 3 are padding); None: the whole-cube graph."""
        chunk = self.spec.band_chunk
        return None if chunk is None else min(chunk, bands)

    def _export_form(self, bands: int) -> str:
        """The ``dualsr export`` options that make what this run uses: band-chunk graphs, and IR beside the graph."""
        chunk = self.chunk(bands)
        ir = " --openvino" if self.kind.artefact == "ir" else ""
        return (f" --band-chunk {chunk}" if chunk is not None else "") + ir

    def _export(
        self,
        scale: int,
        bands: int,
        model: Model,
        *,
        tensorrt: str,
        precision: str | None = None,
        band_chunk: int | None = None,
    ) -> None:
        from dualsr_deploy.export.build import export_variant
        from dualsr_deploy.export.recipes import default_recipe

        precision = precision or self.spec.precision
        recipe = default_recipe(scale, bands).with_overrides(checkpoint=model.path, precisions=(precision,))
        what = f"{bands}-band {precision} graph"
        if band_chunk is not None:
            what = f"{precision} band-chunk graph ({band_chunk} bands a call, for every band count from {band_chunk})"
        self.say(f"no ×{scale} {what} in {self.spec.artefacts_dir}: exporting one")
        export_variant(
            recipe,
            out_dir=self.spec.artefacts_dir,
            tensorrt=tensorrt,  # type: ignore[arg-type]
            band_chunk=band_chunk,
        )


__all__ = ["Model", "Models", "RunArtefacts"]
