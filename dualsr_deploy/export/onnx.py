"""``torch2onnx``: the folded cube model as one self-contained ONNX graph (DESIGN.md, "Deployment graphs").

The graph maps an LR tile batch ``lr (B, C, h, w)`` float32 to the residual ``(B, C, s·h, s·w)`` float32;
``B, h, w`` are dynamic, ``C`` is fixed per export, the neighbour rule is a constant gather. The bicubic skip
is not in the graph (TensorRT's ONNX parser has no cubic ``Resize``): the runtime adds it in torch.

A *band-chunk* graph (``band_chunk=n``) is the same network cut along the bands, as the torch backend runs it on a
CPU: it maps the neighbour planes of ``n`` consecutive bands ``planes (B, n, 5, h, w)``, the state of the band before
them ``state (B, F, h, w)`` and ``first (1,)`` (1: the chunk starts at band 0) to their residual ``(B, n, s·h, s·w)``
and the last band's state. The runtime gathers the planes and carries the state from chunk to chunk
(:mod:`dualsr_deploy.backends.band_chunks`), so a call holds ``n`` bands' activations instead of every band's: on
285 bands, 128-px tiles, OpenVINO bf16 held 0.61 against 3.84 GiB for the same speed.

Opset 17: inside TensorRT 10's parsed range (9–20) and ONNX Runtime's, and what the TorchScript-based exporter
emits cleanly for these operators (Conv, Gather, Reshape, DepthToSpace, elementwise).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import onnx
import torch
from torch import nn
from torch.jit._trace import TracerWarning

from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.archs.neighbours import check_band_count
from dualsr_deploy.artefacts import CHUNK_INPUTS, CHUNK_OUTPUTS, INPUT_NAME, OUTPUT_NAME, onnx_metadata
from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.errors import ExportError
from dualsr_deploy.optional import require

OPSET = 17
Precision = Literal["fp32", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16")


class _HalfPrecision(nn.Module):
    """FP16 weights and compute behind FP32 inputs and outputs (casts at the graph's edges)."""

    def __init__(self, core: FoldedCoarSR) -> None:
        super().__init__()
        self.core = core.half()

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.core(lr.half()).float()


class _BandChunk(nn.Module):
    """The band-chunk form: ``(planes, state, first)`` → ``(residual, state)`` (:meth:`FoldedCoarSR.chunk`)."""

    def __init__(self, core: FoldedCoarSR) -> None:
        super().__init__()
        self.core = core

    def forward(
        self, planes: torch.Tensor, state: torch.Tensor, first: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.core.chunk(planes, state, first)


def _export_module(core: FoldedCoarSR, precision: Precision, band_chunk: int | None) -> nn.Module:
    exported = copy.deepcopy(core).cpu().float().use_channels_last(False)
    exported.pixels_per_call = None  # one graph call covers every plane (of the chunk); tiling is the runtime's job
    # The tail as it is: OpenVINO's bf16 runs this graph, and its quality records were measured on that tail.
    exported.compose_tail = False
    exported.eval().requires_grad_(False)
    if band_chunk is not None:
        if precision != "fp32":
            raise ExportError(f"band-chunk graphs are fp32 (OpenVINO's bf16 is a hint); got {precision}")
        return _BandChunk(exported)
    return _HalfPrecision(exported) if precision == "fp16" else exported


def _example(core: FoldedCoarSR, bands: int, band_chunk: int | None) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    """Example inputs and the ONNX export's names and dynamic axes, for the whole-cube or the band-chunk form."""
    generator = torch.Generator().manual_seed(0)
    if band_chunk is None:
        names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
        axes = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
        }
        return (torch.rand(1, bands, 32, 32, generator=generator),), {**names, "dynamic_axes": axes}
    f = core.config.n_feats
    example = (
        torch.rand(1, band_chunk, 5, 32, 32, generator=generator),
        torch.rand(1, f, 32, 32, generator=generator),
        torch.zeros(1),  # not band 0: the state's path is traced too (it is, whatever the value)
    )
    names = {"input_names": list(CHUNK_INPUTS), "output_names": list(CHUNK_OUTPUTS)}
    axes = {
        CHUNK_INPUTS[0]: {0: "batch", 3: "height", 4: "width"},
        CHUNK_INPUTS[1]: {0: "batch", 2: "height", 3: "width"},
        CHUNK_OUTPUTS[0]: {0: "batch", 2: "out_height", 3: "out_width"},
        CHUNK_OUTPUTS[1]: {0: "batch", 2: "height", 3: "width"},
    }
    return example, {**names, "dynamic_axes": axes}


def torch2onnx(
    core: FoldedCoarSR,
    path: str | os.PathLike[str],
    *,
    bands: int,
    precision: Precision = "fp32",
    metadata: Mapping[str, str] | None = None,
    simplify: bool = False,
    band_chunk: int | None = None,
) -> Path:
    """Export ``core`` for ``bands``-band cubes to ``path`` (written atomically), checked and shape-inferred.

    ``metadata`` is stored as the model's ``metadata_props`` beside ``scale``, ``bands``, ``neighbour_rule``,
    ``precision``, ``opset``, ``form`` and ``output``. ``simplify`` runs onnxslim (``pip install onnxslim``).
    ``band_chunk``: the band-chunk form for chunks of that many bands (fp32 only; ``bands`` is then the band count
    of the cubes it is made for: the runtime runs ``⌈bands / band_chunk⌉`` calls, the last one padded).
    """
    check_band_count(bands)
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if band_chunk is not None and not 1 <= band_chunk <= bands:
        raise ExportError(f"a band chunk is 1 to {bands} bands (the cubes' band count); got {band_chunk}")
    target = Path(path)
    module = _export_module(core, precision, band_chunk)
    example, names = _example(core, bands, band_chunk)
    with atomic_output(target) as tmp:
        with warnings.catch_warnings():
            # The traced branches depend on the band count only, which is fixed per export by design.
            warnings.simplefilter("ignore", TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            with torch.no_grad():
                torch.onnx.export(module, example, str(tmp), dynamo=False, opset_version=OPSET, **names)
        model = onnx.load(str(tmp))
        if simplify:
            model = _simplify(model)
        facts = {
            "scale": str(core.scale),
            "bands": str(bands),
            "neighbour_rule": core.rule,
            "precision": precision,
            "opset": str(OPSET),
            "form": "whole" if band_chunk is None else "band-chunk",
            **(
                {}
                if band_chunk is None
                else {"chunk_bands": str(band_chunk), "state_channels": str(core.config.n_feats)}
            ),
            "output": "residual: add the bicubic upsampling of the input to get the SR cube",
            **(metadata or {}),
        }
        del model.metadata_props[:]
        for key, value in facts.items():
            model.metadata_props.add(key=key, value=str(value))
        try:
            onnx.checker.check_model(model, full_check=True)
            onnx.shape_inference.infer_shapes(model, strict_mode=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise ExportError(f"{target}: the exported graph failed ONNX's checks: {exc}") from exc
        onnx.save(model, str(tmp))
    return target


def _simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    onnxslim = require("onnxslim", feature="graph simplification (--simplify)", extra="slim", error=ExportError)
    simplified: onnx.ModelProto = onnxslim.slim(model)
    return simplified


__all__ = ["OPSET", "PRECISIONS", "ExportError", "Precision", "onnx_metadata", "torch2onnx"]
