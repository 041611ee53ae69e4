"""``export_variant``: a recipe in, checked ONNX graphs with manifests out (what ``dualsr export`` runs)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from dualsr_deploy._version import __version__
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.backends.base import Backend, BackendUnavailableError
from dualsr_deploy.backends.onnx_backend import OnnxBackend
from dualsr_deploy.backends.torch_backend import TorchBackend
from dualsr_deploy.checkpoint import read_checkpoint
from dualsr_deploy.errors import ScaleMismatchError
from dualsr_deploy.export.manifest import write_manifest
from dualsr_deploy.export.onnx import OPSET, ExportError, torch2onnx
from dualsr_deploy.export.operators import read_operator_table, unsupported_operators
from dualsr_deploy.export.recipes import Recipe
from dualsr_deploy.export.verify import Comparison, verify_backends


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
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export every precision of ``recipe`` to ``out_dir/<name>/`` as ONNX with a JSON manifest beside each file.

    ``operator_table``: an onnx-tensorrt ``operators.md``; the export fails if a graph uses an operator outside it.
    ``verify``: run every available backend against torch float64 and fail if one is out of tolerance.
    On any failure the artefacts written by this call are removed again.
    TensorRT plans are not built yet (see the export issue); their absence is reported in ``skipped``.
    """
    say = progress or (lambda _message: None)
    checkpoint = recipe.checkpoint or shipped_checkpoint(recipe.scale)
    model, info = read_checkpoint(checkpoint)
    if info.scale != recipe.scale:
        raise ScaleMismatchError(
            f"{checkpoint}: a ×{info.scale} model, but recipe {recipe.name!r} asks for ×{recipe.scale}"
        )
    rule = recipe.neighbours or info.neighbour_rule
    core = fold_coarsr(model, rule)
    folder = Path(out_dir) / recipe.name
    table = read_operator_table(operator_table) if operator_table is not None else None
    artefacts: list[Artefact] = []
    try:
        for precision in recipe.precisions:
            target = folder / f"coarsr_x{recipe.scale}_c{recipe.bands}_{precision}.onnx"
            say(f"exporting {target}")
            started = time.perf_counter()
            torch2onnx(
                core,
                target,
                bands=recipe.bands,
                precision=precision,
                metadata={
                    "checkpoint_sha256": info.sha256,
                    "checkpoint": Path(checkpoint).name,
                    "package_version": __version__,
                    "variant": recipe.name,
                },
            )
            graph = onnx.load(str(target))
            unsupported = unsupported_operators(graph, table) if table is not None else None
            if unsupported:
                target.unlink()
                raise ExportError(
                    f"{target}: operators outside TensorRT's ONNX parser support: {', '.join(unsupported)}"
                )
            manifest = write_manifest(
                target,
                {
                    "kind": "onnx",
                    "variant": recipe.name,
                    "precision": precision,
                    "scale": recipe.scale,
                    "bands": recipe.bands,
                    "neighbour_rule": rule,
                    "opset": OPSET,
                    "input": "lr (batch, bands, height, width) float32, batch/height/width dynamic",
                    "output": "residual (batch, bands, s*height, s*width) float32; add the bicubic skip",
                    "checkpoint": str(checkpoint),
                    "checkpoint_sha256": info.sha256,
                    "tensorrt_operator_check": "passed" if table is not None else "not run",
                    "package_version": __version__,
                    "torch_version": torch.__version__,
                    "onnx_version": onnx.__version__,
                    "python_version": platform.python_version(),
                    "export_seconds": round(time.perf_counter() - started, 3),
                    "created_unix": int(time.time()),
                },
            )
            artefacts.append(Artefact(target, manifest, "onnx", precision))

        skipped = ["tensorrt: building plans is not implemented yet (ONNX graphs only)"]
        comparisons: list[Comparison] = []
        if verify:
            backends: list[Backend] = [TorchBackend(core)]
            backends += [OnnxBackend(artefact.path) for artefact in artefacts]  # ORT runs fp16 graphs on CPU too
            opened = []
            for backend in backends:
                try:
                    backend.open()
                    opened.append(backend)
                except BackendUnavailableError as exc:
                    skipped.append(f"{backend.capabilities.name}: {exc}")
            generator = torch.Generator().manual_seed(0)
            inputs = [
                torch.rand(1, recipe.bands, 24, 20, generator=generator),
                torch.rand(2, recipe.bands, 17, 31, generator=generator),
            ]
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
    except BaseException:
        # Nothing half-made or unverified stays under a final name: remove what this run wrote.
        for artefact in artefacts:
            artefact.path.unlink(missing_ok=True)
            artefact.manifest.unlink(missing_ok=True)
        raise
    return ExportResult(recipe, Path(checkpoint), tuple(artefacts), tuple(comparisons), tuple(skipped))
