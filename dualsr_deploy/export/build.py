"""``export_variant``: a recipe in, checked ONNX graphs with manifests out (what ``dualsr export`` runs)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import onnx
import torch

from dualsr_deploy._version import __version__
from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.artefacts import graph_filename, graph_form, plan_path_for, variant_name, write_manifest
from dualsr_deploy.backends import create as backends_create
from dualsr_deploy.checkpoint import CheckpointInfo, read_checkpoint
from dualsr_deploy.errors import BackendUnavailableError, ExportError, ScaleMismatchError
from dualsr_deploy.export.onnx import OPSET, Precision, onnx_metadata, torch2onnx
from dualsr_deploy.export.operators import read_operator_table, unsupported_operators
from dualsr_deploy.export.recipes import Recipe
from dualsr_deploy.export.verify import Comparison, verify_backends
from dualsr_deploy.runtimes import cpu_native_bf16

TensorRTMode = Literal["auto", "require", "off"]
TENSORRT_MODES: tuple[TensorRTMode, ...] = ("auto", "require", "off")


@dataclass(frozen=True)
class Artefact:
    path: Path
    manifest: Path
    kind: str
    precision: str


@dataclass(frozen=True)
class ExportResult:
    recipe: Recipe
    checkpoint: Path
    artefacts: tuple[Artefact, ...]
    verification: tuple[Comparison, ...]
    skipped: tuple[str, ...]


def shipped_checkpoint(scale: int) -> Path:
    """The weights shipped with the package for ``scale`` (:mod:`dualsr_deploy.weights`), or a clear error."""
    from dualsr_deploy.weights import shipped_weights

    return shipped_weights(scale)


def export_variant(
    recipe: Recipe,
    *,
    out_dir: str | os.PathLike[str] = "engines",
    verify: bool = False,
    operator_table: str | os.PathLike[str] | None = None,
    tensorrt: TensorRTMode = "auto",
    simplify: bool = False,
    openvino: bool = False,
    band_chunk: int | None = None,
    progress: Callable[[str], None] | None = None,
    build_progress: Callable[[str, int, int], None] | None = None,
) -> ExportResult:
    """Export every precision of ``recipe`` to ``out_dir/<name>/``: ONNX graphs, then TensorRT plans, a JSON
    manifest beside each file.

    ``operator_table``: an onnx-tensorrt ``operators.md``; the export fails if a graph uses an operator outside it.
    ``tensorrt``: ``auto`` builds plans when TensorRT and a CUDA GPU are usable and otherwise says why not in
    ``skipped``; ``require`` fails instead; ``off`` builds none. Each plan is built from the graph of its own
    precision with the recipe's profile (``<graph>.sm<CC>.plan``: one per GPU architecture).
    ``simplify``: run onnxslim on each graph (outputs are checked by ``verify`` like any other).
    ``openvino``: also convert the fp32 graph to OpenVINO IR beside it (``<graph>.xml``/``.bin``, with a manifest).
    ``verify``: run every available backend against torch float64 and fail if one is out of tolerance.
    ``band_chunk``: write band-chunk graphs of that many bands (:mod:`dualsr_deploy.export.onnx`; what a run makes
    for ONNX Runtime and OpenVINO on a CPU) instead of whole-cube graphs; no TensorRT plans from them.
    ``build_progress(phase, step, steps)``: TensorRT's builder phases, from its builder threads.
    On any failure the artefacts written by this call are removed again.
    """
    if tensorrt not in TENSORRT_MODES:
        raise ExportError(f"unknown TensorRT mode {tensorrt!r}; choose one of {', '.join(TENSORRT_MODES)}")
    if band_chunk is not None and tensorrt != "off":
        raise ExportError(
            "TensorRT plans are built from whole-cube graphs: export band-chunk graphs with tensorrt='off'"
        )
    say = progress or (lambda _message: None)
    source = _Source.load(recipe)
    recipe = source.recipe  # its default name completed with the weights' digest
    table = read_operator_table(operator_table) if operator_table is not None else None
    artefacts: list[Artefact] = []
    try:
        for precision in recipe.precisions:
            artefacts.append(_export_graph(source, Path(out_dir), precision, table, simplify, say, band_chunk))
        skipped: list[str] = []
        plans = _build_plans(recipe, artefacts, tensorrt, say, build_progress, skipped)
        artefacts += plans
        if openvino:
            artefacts.append(_convert_ir(artefacts, say))
        comparisons = _verify(source, artefacts, say, skipped, band_chunk) if verify else []
    except BaseException:
        # Nothing half-made or unverified stays under a final name: remove what this run wrote.
        for artefact in artefacts:
            artefact.path.unlink(missing_ok=True)
            artefact.manifest.unlink(missing_ok=True)
            if artefact.kind == "openvino":
                artefact.path.with_suffix(".bin").unlink(missing_ok=True)
        raise
    return ExportResult(recipe, source.checkpoint, tuple(artefacts), tuple(comparisons), tuple(skipped))


@dataclass(frozen=True)
class _Source:
    """What a recipe exports: its checkpoint, read and folded with the recipe's neighbour rule."""

    recipe: Recipe
    checkpoint: Path
    info: CheckpointInfo
    core: FoldedCoarSR

    @classmethod
    def load(cls, recipe: Recipe) -> _Source:
        checkpoint = Path(recipe.checkpoint or shipped_checkpoint(recipe.scale))
        model, info = read_checkpoint(checkpoint)
        if info.scale != recipe.scale:
            raise ScaleMismatchError(
                f"{checkpoint}: a ×{info.scale} model, but recipe {recipe.name!r} asks for ×{recipe.scale}"
            )
        if recipe.name == variant_name(recipe.scale, recipe.bands):  # the default name: keyed by the weights too
            recipe = replace(recipe, name=variant_name(recipe.scale, recipe.bands, info.sha256))
        return cls(recipe, checkpoint, info, fold_coarsr(model, recipe.neighbours or info.neighbour_rule))


def _export_graph(
    source: _Source,
    out_dir: Path,
    precision: Precision,
    table: dict[str, bool] | None,
    simplify: bool,
    say: Callable[[str], None],
    band_chunk: int | None = None,
) -> Artefact:
    """One precision's ONNX graph, checked against the operator table when one is given, with its manifest."""
    recipe, info = source.recipe, source.info
    target = out_dir / recipe.name / graph_filename(recipe.scale, recipe.bands, precision, band_chunk)
    say(f"exporting {target}")
    started = time.perf_counter()
    torch2onnx(
        source.core,
        target,
        bands=recipe.bands,
        precision=precision,
        metadata={
            "checkpoint_sha256": info.sha256,
            "checkpoint": source.checkpoint.name,
            "package_version": __version__,
            "variant": recipe.name,
        },
        simplify=simplify,
        band_chunk=band_chunk,
    )
    unsupported = unsupported_operators(onnx.load(str(target)), table) if table is not None else None
    if unsupported:
        target.unlink()
        raise ExportError(f"{target}: operators outside TensorRT's ONNX parser support: {', '.join(unsupported)}")
    manifest = write_manifest(
        target,
        {
            "kind": "onnx",
            "variant": recipe.name,
            "precision": precision,
            "scale": recipe.scale,
            "bands": recipe.bands,
            "neighbour_rule": source.core.rule,
            "opset": OPSET,
            **graph_form(onnx_metadata(target)),
            "checkpoint": str(source.checkpoint),
            "checkpoint_sha256": info.sha256,
            "tensorrt_operator_check": "passed" if table is not None else "not run",
            "simplified": "onnxslim" if simplify else "no",
            "package_version": __version__,
            "torch_version": torch.__version__,
            "onnx_version": onnx.__version__,
            "python_version": platform.python_version(),
            "export_seconds": round(time.perf_counter() - started, 3),
            "created_unix": int(time.time()),
        },
    )
    return Artefact(target, manifest, "onnx", precision)


def _convert_ir(artefacts: list[Artefact], say: Callable[[str], None]) -> Artefact:
    """OpenVINO IR from the fp32 graph of this export (an :class:`ExportError` when there is none)."""
    from dualsr_deploy.export.openvino import onnx2ir

    graphs = [a for a in artefacts if a.kind == "onnx" and a.precision == "fp32"]
    if not graphs:
        raise ExportError("OpenVINO IR is converted from the fp32 graph: add --precision fp32 to the export")
    say(f"converting {graphs[0].path.name} to OpenVINO IR")
    xml = onnx2ir(graphs[0].path)
    return Artefact(xml, xml.with_name(xml.name + ".json"), "openvino", "fp32")


def _verify(
    source: _Source,
    artefacts: list[Artefact],
    say: Callable[[str], None],
    skipped: list[str],
    band_chunk: int | None = None,
) -> list[Comparison]:
    """Every backend that can run here (torch on CPU and CUDA, ONNX Runtime on every graph, every plan) against
    torch float64; an :class:`ExportError` when one is out of tolerance. Band-chunk graphs run every band count from
    their chunk, so they are checked on cubes of three chunks and a part (the scan carried from call to call, the
    last call padded), whatever band count the recipe names."""
    core = source.core
    backends = [backends_create("torch", core=core)]
    if cpu_native_bf16():
        backends.append(backends_create("torch", core=core, precision="bf16"))
    backends += [backends_create("onnx", artefact=a.path) for a in artefacts if a.kind == "onnx"]  # fp16 too
    if torch.cuda.is_available():
        backends.append(backends_create("torch", core=core, device="cuda"))
    plans = [a for a in artefacts if a.kind == "tensorrt"]
    backends += [backends_create("trt", artefact=a.path, device="cuda") for a in plans]
    for ir in (a for a in artefacts if a.kind == "openvino"):
        backends.append(backends_create("openvino", artefact=ir.path))
        if cpu_native_bf16():
            backends.append(backends_create("openvino", artefact=ir.path, precision="bf16"))
        else:
            skipped.append("openvino-cpu-bf16: this CPU has no native bf16")
    opened = []
    for backend in backends:
        try:
            backend.open()
            opened.append(backend)
        except BackendUnavailableError as exc:
            skipped.append(f"{backend.capabilities.name}: {exc}")
    recipe = source.recipe
    if band_chunk is not None:
        recipe = replace(recipe, bands=max(recipe.bands, 3 * band_chunk + band_chunk // 2 + 1))
    inputs = _verification_inputs(recipe, plans_built=bool(plans))
    say(f"verifying {len(opened)} backend(s) against torch float64")
    comparisons = verify_backends(core, opened, inputs)
    for backend in opened:
        backend.close()
    failed = [c for c in comparisons if not c.passed]
    if failed:
        details = "; ".join(
            f"{c.backend}: max {c.max_abs:.2e} (≤ {c.tolerance.max_abs:.0e}), mean {c.mean_abs:.2e} "
            f"(≤ {c.tolerance.mean_abs:.0e})"
            for c in failed
        )
        raise ExportError(f"verification failed: {details}")
    return comparisons


def _build_plans(
    recipe: Recipe,
    graphs: list[Artefact],
    mode: TensorRTMode,
    say: Callable[[str], None],
    build_progress: Callable[[str, int, int], None] | None,
    skipped: list[str],
) -> list[Artefact]:
    """TensorRT plans for every graph, or the reason there are none (in ``skipped``, or raised if required)."""
    if mode == "off":
        skipped.append("tensorrt: not asked for (--tensorrt off)")
        return []
    from dualsr_deploy.export.tensorrt import onnx2engine
    from dualsr_deploy.runtimes import gpu_identity, require_tensorrt

    try:
        require_tensorrt()
        identity = gpu_identity()
    except BackendUnavailableError as exc:
        if mode == "require":
            raise ExportError(f"TensorRT plans were required but cannot be built here: {exc}") from exc
        skipped.append(f"tensorrt: {exc}")
        return []
    plans: list[Artefact] = []
    try:
        for graph in graphs:
            target = plan_path_for(graph.path, identity)
            say(f"building {target} with TensorRT {identity['tensorrt']} on {identity['gpu']}")
            plan = onnx2engine(
                graph.path, target, precision=graph.precision, profile=recipe.tensorrt, progress=build_progress
            )
            plans.append(Artefact(plan, plan.with_name(plan.name + ".json"), "tensorrt", graph.precision))
    except BaseException:
        for artefact in plans:
            artefact.path.unlink(missing_ok=True)
            artefact.manifest.unlink(missing_ok=True)
        raise
    return plans


def _verification_inputs(recipe: Recipe, *, plans_built: bool) -> list[torch.Tensor]:
    """Two random tile batches and one real one: the MATLAB-bicubic LR of a synthetic scene made of measured
    reflectances (deterministic, no data needed). With plans, every shape lies inside the recipe's profile."""
    from dualsr_deploy.data.synth import synthesize
    from dualsr_deploy.ops.imresize import imresize

    generator = torch.Generator().manual_seed(0)
    profile = recipe.tensorrt
    shapes = [profile.min_tile, profile.opt_tile] if plans_built else [(1, 24, 20), (2, 17, 31)]
    inputs = [torch.rand(b, recipe.bands, h, w, generator=generator) for b, h, w in shapes]
    _, h, w = profile.opt_tile if plans_built else (1, 24, 24)
    scene = synthesize(0, size=max(h, w) * recipe.scale, bands=recipe.bands)
    hr = torch.from_numpy(scene.cube).double()
    lr = imresize(hr, 1 / recipe.scale).clamp(0, 1).float()[:, :h, :w]
    return [*inputs, lr.unsqueeze(0).contiguous()]
