"""OpenVINO IR from an exported ONNX graph: ``<graph>.xml`` + ``.bin`` beside it, with a manifest.

The IR keeps the graph's fp32 weights (no fp16 compression): the runtime precision (fp32 or bf16) is a hint given
when the IR is compiled (:class:`~dualsr_deploy.backends.openvino_backend.OpenVinoBackend`), so one IR serves both.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

from dualsr_deploy._version import __version__
from dualsr_deploy.artefacts import (
    GRAPH_KEYS,
    graph_form,
    graph_metadata,
    ir_path_for,
    read_manifest,
    sha256_of,
    write_manifest,
)
from dualsr_deploy.errors import ExportError
from dualsr_deploy.runtimes import import_openvino


def onnx2ir(graph: str | os.PathLike[str]) -> Path:
    """Convert a dualsr fp32 ONNX graph to OpenVINO IR beside it; returns the ``.xml`` path.

    The graph's metadata (scale, bands, neighbour rule, checkpoint hash …) goes into the IR's ``rt_info`` under
    ``dualsr`` and into the manifest, with the hashes of the graph and of the ``.bin``. Written under temporary
    names and renamed, so a failed conversion leaves nothing under the final names.
    """
    graph = Path(graph)
    meta = graph_metadata(graph)
    if meta["precision"] not in ("fp32", "int8"):
        raise ExportError(f"{graph}: OpenVINO IR is made from the fp32 or INT8 graph (this one is {meta['precision']})")
    ov = import_openvino()
    started = time.perf_counter()
    target = ir_path_for(graph)
    try:
        model = ov.convert_model(str(graph))
    except Exception as exc:  # OpenVINO raises its own exception types
        raise ExportError(f"{graph}: OpenVINO could not convert it ({type(exc).__name__}: {exc})") from exc
    for key, value in meta.items():
        model.set_rt_info(str(value), ["dualsr", key])
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".ir-") as scratch:
        tmp_xml = Path(scratch) / target.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp_xml, target)
    source = read_manifest(graph) if graph.with_name(graph.name + ".json").is_file() else {}
    write_manifest(
        target,
        {
            "kind": "openvino",
            "weights_file": target.with_suffix(".bin").name,
            "weights_sha256": sha256_of(target.with_suffix(".bin")),
            "graph": graph.name,
            "graph_sha256": sha256_of(graph),
            **{key: meta[key] for key in GRAPH_KEYS},
            "neighbour_rule": meta.get("neighbour_rule", source.get("neighbour_rule")),
            "checkpoint": source.get("checkpoint", meta.get("checkpoint")),
            "checkpoint_sha256": meta.get("checkpoint_sha256", source.get("checkpoint_sha256")),
            "variant": meta.get("variant", source.get("variant")),
            **graph_form(meta),
            "runtime_precisions": "int8 (its Q/DQ pairs)"
            if meta["precision"] == "int8"
            else "fp32, or bf16 by INFERENCE_PRECISION_HINT where the CPU has native bf16",
            "package_version": __version__,
            "openvino_version": str(ov.__version__),
            "python_version": platform.python_version(),
            "export_seconds": round(time.perf_counter() - started, 3),
            "created_unix": int(time.time()),
        },
    )
    return target


__all__ = ["onnx2ir"]
