"""``onnx2engine``: a TensorRT plan from an exported ONNX graph, with a manifest tying it to its GPU and version.

Written against TensorRT's documented Python API for versions 10 and 11, and NOT run against a real TensorRT:
the development machines have no TensorRT and no GPU (the real build is tested by ``tests/export/test_tensorrt.py``
tests marked ``trt``/``gpu``, which skip there). What runs here is the control flow against a recording stand-in
of the API (``tests/export/fake_tensorrt.py``). The ``tensorrt-stubs`` 10.13.0.35.1 wheel could not serve as a type
check (mypy rejects syntax errors in its ``tensorrt_bindings/tensorrt.pyi``).

Precision, for both versions:

- a plan built from the graph of its own precision (the FP16 ONNX for an FP16 plan) is built as a strongly typed
  network: the only way in TensorRT 11 (weak typing and ``BuilderFlag.FP16`` are gone; the ``STRONGLY_TYPED`` flag
  is accepted and ignored there) and the recommended one in 10.12+;
- TensorRT 10 can also build an FP16 plan from the FP32 graph with weak typing and ``BuilderFlag.FP16`` (TensorRT
  then picks per layer); TensorRT 11 refuses that combination with a message saying which graph to use.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dualsr_deploy.artefacts import (
    INPUT_NAME,
    check_plan_manifest,
    graph_metadata,
    plan_path_for,
    sha256_of,
    write_manifest,
)
from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.errors import ExportError
from dualsr_deploy.export.recipes import TensorRTProfile
from dualsr_deploy.runtimes import gpu_identity, require_tensorrt


def _major(version: str | None) -> int:
    return int((version or "0").split(".")[0])


def timing_cache_path(folder: Path, identity: dict[str, Any]) -> Path:
    """One timing cache per GPU model and TensorRT version, kept beside the plans."""
    gpu = "".join(c if c.isalnum() else "-" for c in str(identity["gpu"]))
    return folder / f"timing-{gpu}-sm{identity['compute_capability']}-trt{identity['tensorrt']}.cache"


def onnx2engine(
    onnx_path: str | os.PathLike[str],
    plan_path: str | os.PathLike[str],
    *,
    precision: str,
    profile: TensorRTProfile,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Build a plan for ``precision`` ("fp32" or "fp16") from ``onnx_path`` with one optimisation profile.

    ``progress(phase, step, steps)`` is called from TensorRT's builder threads. The plan is written atomically
    with a manifest (ONNX hash, TensorRT/CUDA versions, GPU, precision, profile, build time).
    """
    require_tensorrt()
    import tensorrt as trt

    identity = gpu_identity()
    source = Path(onnx_path)
    meta = graph_metadata(source)
    bands = int(meta["bands"])
    graph_precision = meta.get("precision")
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"TensorRT plans are built in fp32 or fp16; got {precision!r}")
    strongly_typed = graph_precision == precision
    if not strongly_typed and not (precision == "fp16" and graph_precision == "fp32"):
        raise ExportError(f"{source}: cannot build a {precision} plan from a {graph_precision} graph")
    if not strongly_typed and _major(identity["tensorrt"]) >= 11:
        raise ExportError(
            f"TensorRT {identity['tensorrt']} takes precision from the graph: build the {precision} plan from the "
            f"{precision} ONNX (this one is {graph_precision})"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.read_bytes()):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise ExportError(f"{source}: TensorRT's ONNX parser refused the graph: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, profile.workspace_mib << 20)
    if not strongly_typed:  # TensorRT 10 only (checked above): weak typing may pick FP16 kernels per layer
        config.set_flag(trt.BuilderFlag.FP16)
    shapes = [(b, bands, h, w) for b, h, w in (profile.min_tile, profile.opt_tile, profile.max_tile)]
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(INPUT_NAME, shapes[0], shapes[1], shapes[2])
    config.add_optimization_profile(optimisation)

    cache_file = timing_cache_path(Path(plan_path).parent, identity)
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, False)
    if progress is not None:
        config.progress_monitor = _monitor(progress)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{source}: TensorRT could not build a {precision} plan (see its log above)")
    target = Path(plan_path)
    with atomic_output(target) as tmp:
        tmp.write_bytes(bytes(serialized))
    with atomic_output(cache_file) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    write_manifest(
        target,
        {
            "kind": "tensorrt",
            "onnx": source.name,
            "onnx_sha256": sha256_of(source),
            "precision": precision,
            "typing": "strong" if strongly_typed else "weak (BuilderFlag.FP16)",
            "scale": int(meta["scale"]),
            "bands": bands,
            "profile": {"min": shapes[0], "opt": shapes[1], "max": shapes[2]},
            "workspace_mib": profile.workspace_mib,
            "build_seconds": round(time.perf_counter() - started, 1),
            **identity,
        },
    )
    return target


def _monitor(report: Callable[[str, int, int], None]) -> Any:
    import tensorrt as trt

    class _Progress(trt.IProgressMonitor):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            report(phase_name, 0, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            report(phase_name, step + 1, self.steps.get(phase_name, 0))
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            self.steps.pop(phase_name, None)

    return _Progress()


__all__ = [
    "check_plan_manifest",
    "gpu_identity",
    "onnx2engine",
    "plan_path_for",
    "require_tensorrt",
    "timing_cache_path",
]
