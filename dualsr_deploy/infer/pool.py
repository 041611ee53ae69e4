"""The coarse models a run needs, opened once per (scale, band count) and kept for the whole run.

``torch`` runs the folded cube model for any band count. ``onnx``, ``trt`` and ``openvino`` run exported artefacts,
which are fixed to one band count: they are looked up in the artefacts folder (``engines/coarsr-x{s}-c{C}/``), checked
against the weights the run was asked to use, and exported there on first need (graphs on any machine, TensorRT plans
where TensorRT and a GPU are present, OpenVINO IR where OpenVINO is installed), so an archive with 31-, 48- and 5-band
scenes just works. Backends are built by :func:`dualsr_deploy.backends.create`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dualsr_deploy.archs.coarsr import CoarSRConfig
from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.artefacts import (
    graph_filename,
    ir_path_for,
    plan_path_for,
    read_manifest,
    variant_name,
    verify_artefact,
)
from dualsr_deploy.backends import Backend, create
from dualsr_deploy.checkpoint import CheckpointInfo, read_checkpoint
from dualsr_deploy.errors import CheckpointError
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


class BackendPool:
    """Opens backends on demand, one per (scale, bands) (one per scale for torch), and closes them all."""

    def __init__(self, spec: BackendSpec, *, say: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.say = say or (lambda _message: None)
        self._models: dict[int, Model] = {}
        self._backends: dict[tuple[int, int | None], Backend] = {}
        self._lock = threading.Lock()

    def model(self, scale: int) -> Model:
        if scale not in self._models:
            path = self.spec.checkpoint(scale)
            network, info = read_checkpoint(path)
            if info.scale != scale:
                raise CheckpointError(f"{path}: a ×{info.scale} model, given for ×{scale}")
            self._models[scale] = Model(fold_coarsr(network, info.neighbour_rule), info, Path(path))
        return self._models[scale]

    def backend(self, scale: int, bands: int) -> Backend:
        key = (scale, None if self.spec.backend == "torch" else bands)
        with self._lock:
            if key not in self._backends:
                backend = self._create(scale, bands)
                backend.open()
                self._backends[key] = backend
            return self._backends[key]

    def _create(self, scale: int, bands: int) -> Backend:
        spec = self.spec
        model = self.model(scale)
        if spec.backend == "torch":
            return create("torch", core=model.core, device=spec.device, precision=spec.precision, compile=spec.compile)
        if spec.backend == "openvino":
            return create("openvino", artefact=self.ir(scale, bands), device=spec.device, precision=spec.precision)
        graph = self.graph(scale, bands)
        if spec.backend == "onnx":
            return create("onnx", artefact=graph, device=spec.device, precision=spec.precision)
        from dualsr_deploy.runtimes import gpu_identity, require_tensorrt

        require_tensorrt()
        plan = plan_path_for(graph, gpu_identity())
        if not plan.is_file():
            self._export(scale, bands, model, tensorrt="require")
        return create("trt", artefact=plan, device=spec.device, precision=spec.precision)

    def graph(self, scale: int, bands: int, precision: str | None = None) -> Path:
        """The ONNX graph of the ×``scale`` ``bands``-band model in the artefacts folder, checked against this
        run's weights, exported first if absent."""
        model = self.model(scale)
        precision = precision or self.spec.precision
        graph = self.spec.artefacts_dir / variant_name(scale, bands) / graph_filename(scale, bands, precision)
        if graph.is_file() and graph.with_name(graph.name + ".json").is_file():
            self._check_source(graph, model, bands)
            return graph
        self._export(scale, bands, model, tensorrt="off", precision=precision)
        return graph

    def ir(self, scale: int, bands: int) -> Path:
        """The OpenVINO IR of the ×``scale`` ``bands``-band model, converted from the fp32 graph on first need and
        checked against this run's weights."""
        from dualsr_deploy.export.openvino import onnx2ir

        model = self.model(scale)
        graph = self.graph(scale, bands, "fp32")
        ir = ir_path_for(graph)
        if ir.is_file() and ir.with_name(ir.name + ".json").is_file():
            self._check_source(ir, model, bands)
            return ir
        self.say(f"no ×{scale} {bands}-band OpenVINO IR in {self.spec.artefacts_dir}: converting {graph.name}")
        return onnx2ir(graph)

    @staticmethod
    def _check_source(artefact: Path, model: Model, bands: int) -> None:
        if artefact.suffix == ".onnx":  # plans and IRs are verified where they are opened
            verify_artefact(artefact)
        built_from = read_manifest(artefact).get("checkpoint_sha256")
        if built_from != model.info.sha256:
            raise CheckpointError(
                f"{artefact} was exported from other weights (SHA-256 {str(built_from)[:12]}…) than this run uses "
                f"({model.path.name}, {model.info.sha256[:12]}…); re-export with dualsr export "
                f"--checkpoint {model.path} --bands {bands}, or point --engines elsewhere"
            )

    def _export(self, scale: int, bands: int, model: Model, *, tensorrt: str, precision: str | None = None) -> None:
        from dualsr_deploy.export.pipeline import export_variant
        from dualsr_deploy.export.recipes import default_recipe

        precision = precision or self.spec.precision
        recipe = default_recipe(scale, bands).with_overrides(checkpoint=model.path, precisions=(precision,))
        self.say(f"no ×{scale} {bands}-band {precision} graph in {self.spec.artefacts_dir}: exporting one")
        export_variant(recipe, out_dir=self.spec.artefacts_dir, tensorrt=tensorrt)  # type: ignore[arg-type]

    @property
    def opened(self) -> list[str]:
        return [backend.capabilities.name for backend in self._backends.values()]

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()


__all__ = ["BackendPool", "Model"]
