"""``torch2onnx``: the folded cube model as one self-contained ONNX graph (DESIGN.md, "Deployment graphs").

The graph maps an LR tile batch ``lr (B, C, h, w)`` float32 to the residual ``(B, C, s·h, s·w)`` float32;
``B, h, w`` are dynamic, ``C`` is fixed per export, the neighbour rule is a constant gather. The bicubic skip
is not in the graph (TensorRT's ONNX parser has no cubic ``Resize``): the runtime adds it in torch.

Opset 17: inside TensorRT 10's parsed range (9–20) and ONNX Runtime's, and what the TorchScript-based exporter
emits cleanly for these operators (Conv, Gather, Reshape, DepthToSpace, elementwise).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import onnx
import torch
from torch import nn
from torch.jit._trace import TracerWarning

from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.archs.neighbours import check_band_count
from dualsr_deploy.artefacts import INPUT_NAME, OUTPUT_NAME, onnx_metadata
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


def _export_module(core: FoldedCoarSR, precision: Precision) -> nn.Module:
    exported = copy.deepcopy(core).cpu().float().use_channels_last(False)
    exported.pixels_per_call = None  # one graph call covers every plane; tiling is the runtime's job
    exported.eval().requires_grad_(False)
    return _HalfPrecision(exported) if precision == "fp16" else exported


def torch2onnx(
    core: FoldedCoarSR,
    path: str | os.PathLike[str],
    *,
    bands: int,
    precision: Precision = "fp32",
    metadata: Mapping[str, str] | None = None,
    simplify: bool = False,
) -> Path:
    """Export ``core`` for ``bands``-band cubes to ``path`` (written atomically), checked and shape-inferred.

    ``metadata`` is stored as the model's ``metadata_props`` beside ``scale``, ``bands``, ``neighbour_rule``,
    ``precision``, ``opset`` and ``output``. ``simplify`` runs onnxslim (``pip install onnxslim``).
    """
    check_band_count(bands)
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    target = Path(path)
    module = _export_module(core, precision)
    example = torch.rand(1, bands, 32, 32, generator=torch.Generator().manual_seed(0))
    with atomic_output(target) as tmp:
        with warnings.catch_warnings():
            # The traced branches depend on the band count only, which is fixed per export by design.
            warnings.simplefilter("ignore", TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            with torch.no_grad():
                torch.onnx.export(
                    module,
                    (example,),
                    str(tmp),
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={
                        INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                        OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
                    },
                )
        model = onnx.load(str(tmp))
        if simplify:
            model = _simplify(model)
        facts = {
            "scale": str(core.scale),
            "bands": str(bands),
            "neighbour_rule": core.rule,
            "precision": precision,
            "opset": str(OPSET),
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
