"""INT8 graphs under the quality rule (issue #45): ``dualsr export --int8 --calibrate STORE``.

The fp32 graph gets explicit quantisation, Q/DQ pairs in the form TensorRT 10 builds from (its implicit INT8 is
deprecated) and ONNX Runtime and OpenVINO run as int8: per-output-channel symmetric int8 weights, and a per-tensor
asymmetric uint8 range at each quantised convolution's input (x86's VNNI form, u8 × s8). The convolutions kept in
fp32 are those post-training INT8 was most sensitive to (``docs/results/int8.md``): the first one on the input
planes, the upsampling tail and its merge; the band scan's small state merges, additions, gathers and
concatenations stay fp32 too.

The input ranges are the minimum and maximum the fp32 model sees at each of those inputs over the LR patches of a
patch store's **training** split (``dualsr data prepare``: real tiles, in the units the network sees). The store's
held-out scenes then check the rule in each runtime installed (ONNX Runtime, OpenVINO): the INT8 graph for each
scene's band count against the fp32 graph in the same runtime, the SR (residual plus the MATLAB bicubic skip,
clipped to [0, 1]) scored against HR. A graph that fails is not written: the export says by how much.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.backends.fidelity import FidelityRecord, SceneDelta, device_kind
from dualsr_deploy.errors import ExportError

# module name prefixes of the convolutions left in fp32: the first conv, the tail and its merge, the band scan's state
# merge (one small conv per band; quantising it changed nothing, docs/results/int8.md)
KEEP_FP32 = ("head", "tail", "merge_out", "merge_state")
RUNTIMES = ("onnx", "openvino")  # the backends that run Q/DQ graphs on a CPU
CALIBRATION_PATCHES = 512  # training patches whose ranges set the activations' (spread over the store)


def quantised_convs(core: FoldedCoarSR) -> list[str]:
    """The module names of the convolutions that get int8 weights and inputs."""
    return [
        name
        for name, module in core.named_modules()
        if isinstance(module, nn.Conv2d) and not name.startswith(KEEP_FP32)
    ]


@torch.no_grad()
def input_ranges(core: FoldedCoarSR, tiles: Iterable[torch.Tensor]) -> dict[str, tuple[float, float]]:
    """``{conv name: (min, max)}`` of each quantised convolution's input over ``tiles`` (LR batches)."""
    ranges: dict[str, tuple[float, float]] = {}
    hooks = []

    def watch(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            low, high = float(args[0].amin()), float(args[0].amax())
            old = ranges.get(name, (low, high))
            ranges[name] = (min(old[0], low), max(old[1], high))

        return hook

    modules = dict(core.named_modules())
    for name in quantised_convs(core):
        hooks.append(modules[name].register_forward_pre_hook(watch(name)))
    try:
        for tile in tiles:
            core(tile.float())
    finally:
        for handle in hooks:
            handle.remove()
    return ranges


def _u8(low: float, high: float) -> tuple[float, int]:
    """Scale and zero point of an asymmetric uint8 range that holds ``[low, high]`` and zero exactly."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0 if high > low else 1.0
    return scale, int(np.clip(round(-low / scale), 0, 255))


def _module_name(node: onnx.NodeProto) -> str:
    """The torch module a TorchScript-exported node came from: ``/rounds.0/left.0/conv1/Conv`` → ``rounds.0.left
    .0.conv1``."""
    return ".".join(node.name.strip("/").split("/")[:-1])


def add_qdq(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> onnx.ModelProto:
    """``model`` (the fp32 graph) with Q/DQ before each Conv in ``ranges``: its input as uint8 with the range's
    scale, its weights as per-channel int8 initialisers."""
    out = copy.deepcopy(model)
    graph = out.graph
    weights = {init.name: init for init in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    done = set()
    for node in graph.node:
        name = _module_name(node)
        if node.op_type != "Conv" or name not in ranges:
            nodes.append(node)
            continue
        if node.input[1] not in weights:
            raise ExportError(f"INT8: the weights of {node.name} are not a constant of the graph")
        done.add(name)
        tag = name.replace(".", "_")
        scale, zero = _u8(*ranges[name])
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(scale, np.float32), f"{tag}_x_scale"),
                numpy_helper.from_array(np.array(zero, np.uint8), f"{tag}_x_zero"),
            ]
        )
        x = node.input[0]
        nodes.append(helper.make_node("QuantizeLinear", [x, f"{tag}_x_scale", f"{tag}_x_zero"], [f"{tag}_xq"]))
        nodes.append(
            helper.make_node("DequantizeLinear", [f"{tag}_xq", f"{tag}_x_scale", f"{tag}_x_zero"], [f"{tag}_xdq"])
        )
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        peak = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        w_scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        w_q = np.clip(np.rint(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
        graph.initializer.extend(
            [
                numpy_helper.from_array(w_q, f"{tag}_w_q"),
                numpy_helper.from_array(w_scale, f"{tag}_w_scale"),
                numpy_helper.from_array(np.zeros(w.shape[0], np.int8), f"{tag}_w_zero"),
            ]
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [f"{tag}_w_q", f"{tag}_w_scale", f"{tag}_w_zero"], [f"{tag}_wdq"], axis=0
            )
        )
        node.input[0], node.input[1] = f"{tag}_xdq", f"{tag}_wdq"
        nodes.append(node)
    missing = sorted(set(ranges) - done)
    if missing:
        raise ExportError(f"INT8: no Conv node in the graph for {', '.join(missing)}")
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for prop in out.metadata_props:
        if prop.key == "precision":
            prop.value = "int8"
    onnx.checker.check_model(out)
    return out


def int8_graph(
    core: FoldedCoarSR,
    bands: int,
    ranges: dict[str, tuple[float, float]],
    path: Path,
    metadata: dict[str, str] | None = None,
) -> Path:
    """The INT8 graph of ``core`` for ``bands`` bands at ``path`` (written atomically), ``metadata`` in its
    ``metadata_props`` as :func:`~dualsr_deploy.export.onnx.torch2onnx` keeps it."""
    from dualsr_deploy.atomic import atomic_output
    from dualsr_deploy.export.onnx import torch2onnx

    with tempfile.TemporaryDirectory(prefix="dualsr-int8-") as work:
        fp32 = torch2onnx(core, Path(work) / "fp32.onnx", bands=bands, metadata=metadata)
        model = add_qdq(onnx.load(str(fp32)), ranges)
    with atomic_output(path) as tmp:
        onnx.save(model, str(tmp))
    return path


@dataclass(frozen=True)
class Int8Check:
    """The rule checked for an INT8 graph: one record per runtime (``precision`` ``int8``)."""

    records: tuple[FidelityRecord, ...]

    def passes(self) -> bool:
        return bool(self.records) and all(r.passes() for r in self.records)


def _backend(runtime: str, graph: Path, precision: str, threads: int) -> Any:
    """The backend a run would open for ``graph`` (OpenVINO: through IR converted beside it), so that the rule is
    checked with a run's own session options and hints."""
    from dualsr_deploy.backends import create

    if runtime == "openvino":
        from dualsr_deploy.export.openvino import onnx2ir

        return create("openvino", artefact=onnx2ir(graph), precision=precision, threads=threads)
    return create("onnx", artefact=graph, precision=precision, threads=threads)


CHECK_TILE = 128  # LR pixels: held-out scenes run in tiles of this size with a halo, as a run's tiles are exact


def _tiled(run: Callable[[np.ndarray], np.ndarray], lr: np.ndarray, scale: int) -> np.ndarray:
    """The residual of ``lr (bands, h, w)`` run in :data:`CHECK_TILE`-pixel tiles with a receptive-field halo (the
    same values as one whole call; a graph holds every band's activations at once)."""
    from dualsr_deploy.archs.cube import RECEPTIVE_FIELD

    bands, h, w = lr.shape
    out = np.empty((bands, scale * h, scale * w), np.float32)
    for top in range(0, h, CHECK_TILE):
        for left in range(0, w, CHECK_TILE):
            y0, x0 = max(0, top - RECEPTIVE_FIELD), max(0, left - RECEPTIVE_FIELD)
            y1, x1 = min(h, top + CHECK_TILE + RECEPTIVE_FIELD), min(w, left + CHECK_TILE + RECEPTIVE_FIELD)
            got = run(np.ascontiguousarray(lr[None, :, y0:y1, x0:x1]))[0]
            rows, cols = min(CHECK_TILE, h - top), min(CHECK_TILE, w - left)
            dy, dx = scale * (top - y0), scale * (left - x0)
            out[:, scale * top : scale * (top + rows), scale * left : scale * (left + cols)] = got[
                :, dy : dy + scale * rows, dx : dx + scale * cols
            ]
    return out


def check_rule(
    core: FoldedCoarSR,
    ranges: dict[str, tuple[float, float]],
    scenes: Sequence[tuple[str, torch.Tensor, torch.Tensor]],
    *,
    runtimes: Sequence[str] = RUNTIMES,
    threads: int = 2,
    quantised: FoldedCoarSR | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> Int8Check:
    """The INT8 graph (of ``quantised``, a fine-tuned copy, else of ``core``) against ``core``'s fp32 graph on each
    held-out ``(name, lr, hr)`` scene, in each runtime."""
    import datetime

    from dualsr_deploy.backends.fidelity import device_words, software_versions
    from dualsr_deploy.metrics import psnr, sam
    from dualsr_deploy.ops.imresize import imresize

    scores: dict[str, dict[str, dict[str, tuple[dict[str, float], float]]]] = {r: {} for r in runtimes}
    with tempfile.TemporaryDirectory(prefix="dualsr-int8-check-") as work:
        for name, lr, hr in scenes:
            bands = lr.shape[0]
            graphs = {"fp32": Path(work) / f"fp32_c{bands}.onnx", "int8": Path(work) / f"int8_c{bands}.onnx"}
            if not graphs["fp32"].exists():
                from dualsr_deploy.export.onnx import torch2onnx

                torch2onnx(core, graphs["fp32"], bands=bands)
                int8_graph(quantised or core, bands, ranges, graphs["int8"])
            skip = imresize(lr.double(), core.scale).float()
            for runtime in runtimes:
                for precision, path in graphs.items():
                    with _backend(runtime, path, precision, threads) as backend:

                        def run(x: np.ndarray, backend: Any = backend) -> np.ndarray:
                            tile = torch.from_numpy(x)
                            backend.check(tile)
                            return backend.residual(tile).cpu().numpy()  # the skip is MATLAB's, added below

                        start = time.perf_counter()
                        residual = _tiled(run, lr.numpy(), core.scale)
                        seconds = time.perf_counter() - start
                    sr = (torch.from_numpy(residual) + skip).clamp(0, 1)
                    scores[runtime].setdefault(precision, {})[name] = (
                        {"psnr": psnr(sr, hr.float()), "sam": sam(sr, hr.float())},
                        seconds,
                    )
                say(f"{runtime}: {name} done")
    records = []
    for runtime in runtimes:
        fp32, int8 = scores[runtime]["fp32"], scores[runtime]["int8"]
        records.append(
            FidelityRecord(
                backend=runtime,
                precision="int8",
                kind=device_kind("cpu"),
                device=device_words("cpu"),
                stage="coarse",
                scale=core.scale,
                tile=None,
                half_sha256=None,
                seconds_fp32=math.fsum(t for _s, t in fp32.values()),
                seconds=math.fsum(t for _s, t in int8.values()),
                measured=datetime.date.today().isoformat(),
                software=software_versions(runtime),
                scenes=tuple(
                    SceneDelta(
                        name,
                        "coarse",
                        fp32[name][0]["psnr"],
                        fp32[name][0]["sam"],
                        int8[name][0]["psnr"],
                        int8[name][0]["sam"],
                    )
                    for name in fp32
                ),
            )
        )
    return Int8Check(tuple(records))


def calibration_tiles(store: Path, patches: int = CALIBRATION_PATCHES, batch: int = 16) -> list[torch.Tensor]:
    """LR batches from ``store``'s training split, ``patches`` of them spread evenly over it (every kernel)."""
    import h5py

    with h5py.File(store, "r") as handle:
        lr: Any = handle["train/lr"]
        kernels, count = lr.shape[0], lr.shape[1]
        if count == 0:
            raise ExportError(f"{store}: the store has no training patches to calibrate on")
        take = sorted({int(i) for i in np.linspace(0, count - 1, max(1, patches // kernels))})
        cubes = np.concatenate([lr[k, take] for k in range(kernels)])
    tensor = torch.from_numpy(np.ascontiguousarray(cubes, dtype=np.float32))
    return [tensor[first : first + batch] for first in range(0, len(tensor), batch)]


@dataclass(frozen=True)
class Int8Export:
    """What ``export --int8`` did: the rule's check, and the graph and its records where it passed."""

    check: Int8Check
    graph: Path | None
    records: Path | None


def export_int8(
    weights: Path,
    store: Path,
    out_dir: Path,
    *,
    bands: int,
    operator_table: Path | None = None,
    threads: int = 2,
    qat_steps: int = 0,
    say: Callable[[str], None] = lambda _line: None,
) -> Int8Export:
    """Calibrate on ``store``'s training patches, check the rule on its held-out scenes, and write the INT8 graph
    for ``bands`` bands into its variant folder under ``out_dir`` (where ``dualsr infer --precision int8`` finds
    it), with its manifest and its records (``<graph>.fidelity.json``), only where it passed. ``qat_steps``: first
    fine-tune a copy through the INT8 rounding (:mod:`dualsr_deploy.export.qat`); the rule still compares with the
    weights' own fp32 results."""
    from dualsr_deploy.archs.fold import fold_coarsr
    from dualsr_deploy.archs.neighbours import check_band_count
    from dualsr_deploy.backends.fidelity import FidelityFile, file_sha256
    from dualsr_deploy.checkpoint import read_checkpoint
    from dualsr_deploy.data.patches import PatchDataset, read_store_info
    from dualsr_deploy.errors import BackendUnavailableError, InputError
    from dualsr_deploy.optional import find

    check_band_count(bands)
    model, info = read_checkpoint(weights)
    store_info = read_store_info(store)
    if store_info.scale != info.scale:
        raise InputError(f"--calibrate {store} is a ×{store_info.scale} store; the weights are ×{info.scale}")
    runtimes = [r for r, module in zip(RUNTIMES, ("onnxruntime", "openvino"), strict=True) if find(module)]
    if not runtimes:
        raise BackendUnavailableError(
            "checking an INT8 graph needs ONNX Runtime or OpenVINO: pip install 'dualsr-deploy[cpu]'"
        )
    dataset = PatchDataset(store, augmentation=False)
    scenes = list(dataset.validation())
    dataset.close()
    if not scenes:
        raise InputError(f"--calibrate {store} holds no held-out scenes to check the quality rule on")
    for name, lr, hr in scenes:  # a store is its maker's claim: a non-finite value would score NaN, not a verdict
        if not (bool(torch.isfinite(lr).all()) and bool(torch.isfinite(hr).all())):
            raise InputError(f"--calibrate {store}: held-out scene {name!r} holds non-finite values")
    core = fold_coarsr(model, info.neighbour_rule).eval()
    tiles = calibration_tiles(store)
    say(f"calibrating {len(quantised_convs(core))} convolutions on {sum(len(t) for t in tiles)} training patches")
    if not all(bool(torch.isfinite(tile).all()) for tile in tiles):  # a NaN would set (or hide in) a range
        raise InputError(f"--calibrate {store}: its training patches hold non-finite values (no range to calibrate)")
    ranges = input_ranges(core, tiles)
    quantised = core
    if qat_steps > 0:
        from dualsr_deploy.export.qat import fine_tune

        quantised = fine_tune(core, ranges, store, qat_steps, say=say)
    say(f"checking the quality rule on {len(scenes)} held-out scenes in {', '.join(runtimes)}")
    check = check_rule(core, ranges, scenes, runtimes=runtimes, threads=threads, quantised=quantised, say=say)
    if not check.passes():
        return Int8Export(check, None, None)
    from dualsr_deploy._version import __version__
    from dualsr_deploy.artefacts import graph_filename, variant_name, write_manifest

    variant = variant_name(info.scale, bands, info.sha256)
    graph = out_dir / variant / graph_filename(info.scale, bands, "int8")
    facts = {"checkpoint_sha256": info.sha256, "checkpoint": weights.name, "package_version": __version__}
    int8_graph(quantised, bands, ranges, graph, metadata={**facts, "variant": variant})
    if operator_table is not None:
        from dualsr_deploy.export.operators import read_operator_table, unsupported_operators

        missing = unsupported_operators(onnx.load(str(graph)), read_operator_table(operator_table))
        if missing:
            graph.unlink()
            raise ExportError(f"the INT8 graph uses operators TensorRT cannot parse: {', '.join(missing)}")
    records = graph.with_name(graph.stem + ".fidelity.json")
    FidelityFile(weights.name, file_sha256(weights), list(check.records)).write(records)
    write_manifest(
        graph,
        {
            **facts,
            "kind": "onnx",
            "variant": variant,
            "precision": "int8",
            "scale": info.scale,
            "bands": bands,
            "neighbour_rule": core.rule,
            "input": "lr (batch, bands, height, width) float32, batch/height/width dynamic",
            "output": "residual (batch, bands, s*height, s*width) float32; add the bicubic skip",
            "quantised": f"Q/DQ: int8 weights per output channel, uint8 inputs of {len(ranges)} convolutions",
            "calibration": f"{store.name}: {sum(len(t) for t in tiles)} training patches, min-max",
            "fine_tuned": f"{qat_steps} steps through the INT8 rounding" if qat_steps else "no",
            "quality_rule": f"passed on {len(scenes)} held-out scenes ({records.name})",
            "tensorrt_operator_check": "passed" if operator_table is not None else "not run",
        },
    )
    return Int8Export(check, graph, records)


__all__ = [
    "KEEP_FP32",
    "RUNTIMES",
    "Int8Check",
    "Int8Export",
    "add_qdq",
    "calibration_tiles",
    "check_rule",
    "export_int8",
    "input_ranges",
    "int8_graph",
    "quantised_convs",
]
