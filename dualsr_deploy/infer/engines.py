"""The coarse models an inference run needs, opened once per (scale, band count) and kept for the whole run.

``torch`` runs the folded cube model for any band count. ``onnx`` and ``trt`` run exported artefacts, which
are fixed to one band count: they are looked up in the engines folder (``engines/coarsr-x{s}-c{C}/``), checked
against the weights the run was asked to use, and exported there on first need (ONNX on any machine, TensorRT
plans where TensorRT and a GPU are present), so an archive with 31-, 48- and 5-band scenes just works.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dualsr_deploy.archs.coarsr import CoarSRConfig
from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.backends.base import Backend, BackendUnavailableError
from dualsr_deploy.checkpoint import CheckpointInfo, read_checkpoint
from dualsr_deploy.errors import CheckpointError, InputError

ENGINES = ("torch", "onnx", "trt")


@dataclass(frozen=True)
class EngineSpec:
    """Which runtime, where, in which precision; ``weights`` maps scale → checkpoint (default: shipped)."""

    engine: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    engines_dir: Path = Path("engines")
    weights: tuple[tuple[int, Path], ...] = ()
    compile: bool = False
    half_scales: tuple[int, ...] = ()  # scales used as the dual stage's ×s/2 model (for messages)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.engine == "trt" and not self.device.startswith("cuda"):
            raise InputError("the trt engine runs on a CUDA GPU; give --device cuda")

    def checkpoint(self, scale: int) -> Path:
        for s, path in self.weights:
            if s == scale:
                return path
        from dualsr_deploy.weights import shipped_scales, shipped_weights

        if scale not in shipped_scales():
            have = ", ".join(f"×{s}" for s in shipped_scales()) or "none"
            option = "--weights-half" if scale in self.half_scales else "--weights"
            raise CheckpointError(
                f"no shipped ×{scale} weights (shipped: {have}); pass {option} PATH, or train one with "
                f"`dualsr train … --scale {scale}`"
            )
        return shipped_weights(scale)

    def has_weights(self, scale: int) -> bool:
        if any(s == scale for s, _ in self.weights):
            return True
        from dualsr_deploy.weights import shipped_scales

        return scale in shipped_scales()

    @property
    def label(self) -> str:
        return f"{self.engine}-{self.device}-{self.precision}"


@dataclass
class Model:
    """One scale's weights: the folded core (for torch and for sizing halos) and what the file said."""

    core: FoldedCoarSR
    info: CheckpointInfo
    path: Path

    @property
    def config(self) -> CoarSRConfig:
        return self.core.config


class EnginePool:
    """Opens backends on demand, one per (scale, bands) (one per scale for torch), and closes them all."""

    def __init__(self, spec: EngineSpec, *, say: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self._say = say or (lambda _message: None)
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
        key = (scale, None if self.spec.engine == "torch" else bands)
        with self._lock:
            if key not in self._backends:
                backend = self._open(scale, bands)
                backend.open()
                self._backends[key] = backend
            return self._backends[key]

    def _open(self, scale: int, bands: int) -> Backend:
        spec = self.spec
        model = self.model(scale)
        if spec.engine == "torch":
            from dualsr_deploy.backends.torch_backend import TorchBackend

            return TorchBackend(model.core, device=spec.device, precision=spec.precision, compile=spec.compile)
        if spec.precision not in ("fp32", "fp16"):
            raise InputError(f"exported engines are fp32 or fp16; got --precision {spec.precision}")
        graph = self.graph(scale, bands)
        if spec.engine == "onnx":
            from dualsr_deploy.backends.onnx_backend import OnnxBackend

            provider = "cpu" if spec.device == "cpu" else "cuda"
            return OnnxBackend(graph, provider=provider)
        from dualsr_deploy.backends.trt_backend import TensorRTBackend
        from dualsr_deploy.export.tensorrt import gpu_identity, plan_path_for, require_tensorrt

        require_tensorrt()
        plan = plan_path_for(graph, gpu_identity())
        if not plan.is_file():
            self._export(scale, bands, model, tensorrt="require")
        return TensorRTBackend(plan)

    def graph(self, scale: int, bands: int) -> Path:
        """The ONNX graph of the ×``scale`` ``bands``-band model in the engines folder, checked against this run's
        weights, exported first if absent."""
        model = self.model(scale)
        folder = self.spec.engines_dir / f"coarsr-x{scale}-c{bands}"
        graph = folder / f"coarsr_x{scale}_c{bands}_{self.spec.precision}.onnx"
        manifest = graph.with_name(graph.name + ".json")
        if graph.is_file() and manifest.is_file():
            built_from = json.loads(manifest.read_text()).get("checkpoint_sha256")
            if built_from != model.info.sha256:
                raise CheckpointError(
                    f"{graph} was exported from other weights (SHA-256 {str(built_from)[:12]}…) than this run uses "
                    f"({model.path.name}, {model.info.sha256[:12]}…); re-export with dualsr export "
                    f"--checkpoint {model.path} --bands {bands}, or point --engines elsewhere"
                )
            return graph
        self._export(scale, bands, model, tensorrt="off")
        return graph

    def _export(self, scale: int, bands: int, model: Model, *, tensorrt: str) -> None:
        from dualsr_deploy.export.pipeline import export_variant
        from dualsr_deploy.export.recipes import default_recipe

        recipe = default_recipe(scale, bands).with_overrides(checkpoint=model.path, precisions=(self.spec.precision,))
        self._say(f"no ×{scale} {bands}-band {self.spec.precision} engine in {self.spec.engines_dir}: exporting one")
        export_variant(recipe, out_dir=self.spec.engines_dir, tensorrt=tensorrt)  # type: ignore[arg-type]

    @property
    def opened(self) -> list[str]:
        return [backend.capabilities.name for backend in self._backends.values()]

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``; CUDA must be there."""
    target = torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"--device {device}: torch sees no CUDA device on this machine")
    if target.type not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda[:N]; got {device!r}")
    return str(target)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
