"""Facts about the artefacts ``dualsr export`` writes (ONNX graphs, TensorRT plans) that both the exporter and the
backends that run them need: tensor names, metadata keys, file names, the JSON manifest beside every artefact
(write, read, check against the running GPU) and file hashing.

Vocabulary: a *graph* is an ONNX file, a *plan* a serialised TensorRT engine, an *IR* OpenVINO's xml/bin pair
converted from a graph; all are *artefacts*, kept in the
artefacts folder (``engines/`` by default, as DESIGN.md names it), one sub-folder per *variant*
(``coarsr-x4-c31-1a2b3c4d5e6f``: scale, band count and the weights' SHA-256, so that graphs of several weight
families share one folder).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.errors import ExportError

INPUT_NAME = "lr"
OUTPUT_NAME = "residual"
CHUNK_INPUTS = ("planes", "state", "first")  # a band-chunk graph's (dualsr_deploy.export.onnx)
CHUNK_OUTPUTS = ("residual", "state_out")
GRAPH_KEYS = ("scale", "bands", "precision")  # metadata every dualsr graph carries (with neighbour_rule, opset, …)
MANIFEST_SUFFIX = ".json"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


WEIGHTS_DIGEST_CHARS = 12  # of the weights' SHA-256 in a variant's name


def variant_name(scale: int, bands: int, weights_sha256: str | None = None) -> str:
    """The default variant (artefacts sub-folder) for a scale, a band count and the weights it is made from
    (``coarsr-x4-c31-1a2b3c4d5e6f``); without the weights' SHA-256, the name folders had before weights were in it
    (still read when their manifest names the same weights)."""
    base = f"coarsr-x{scale}-c{bands}"
    return base if weights_sha256 is None else f"{base}-{weights_sha256[:WEIGHTS_DIGEST_CHARS]}"


def graph_filename(scale: int, bands: int, precision: str, band_chunk: int | None = None) -> str:
    """``coarsr_x2_c285_fp32.onnx``; a band-chunk graph (chunks of 8 bands): ``coarsr_x2_c285_fp32_chunk8.onnx``."""
    form = "" if band_chunk is None else f"_chunk{band_chunk}"
    return f"coarsr_x{scale}_c{bands}_{precision}{form}.onnx"


def chunk_bands(meta: Mapping[str, Any]) -> int | None:
    """The band chunk of a graph's or IR's metadata (None: the whole-cube form); refused when it is not a count."""
    if meta.get("form", "whole") == "whole":
        return None
    if meta.get("form") != "band-chunk" or not str(meta.get("chunk_bands", "")).isdigit():
        raise ExportError(f"unknown graph form {meta.get('form')!r} (chunk_bands {meta.get('chunk_bands')!r})")
    value = int(str(meta["chunk_bands"]))
    if value < 1 or not str(meta.get("state_channels", "")).isdigit() or int(str(meta["state_channels"])) < 1:
        raise ExportError(
            f"a band-chunk graph of {value} bands needs a positive state_channels (got {meta.get('state_channels')!r})"
        )
    return value


def plan_path_for(graph: Path, identity: Mapping[str, Any]) -> Path:
    """``<graph>.sm<CC>.plan`` beside the graph: plans of several GPU architectures can share one folder."""
    cc = str(identity["compute_capability"]).replace(".", "")
    return graph.with_name(f"{graph.stem}.sm{cc}.plan")


def ir_path_for(graph: Path) -> Path:
    """``<graph>.xml`` (with its ``.bin``) beside the fp32 graph it was converted from: OpenVINO IR."""
    return graph.with_suffix(".xml")


def manifest_path(artefact: Path) -> Path:
    return artefact.with_name(artefact.name + MANIFEST_SUFFIX)


def write_manifest(artefact: Path, facts: Mapping[str, Any]) -> Path:
    """Write ``<artefact>.json`` with ``facts`` plus the artefact's name, size and SHA-256."""
    record = {"artefact": artefact.name, "bytes": artefact.stat().st_size, "sha256": sha256_of(artefact)}
    record.update(facts)
    target = manifest_path(artefact)
    with atomic_output(target) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return target


def read_manifest(artefact: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(manifest_path(artefact).read_text())
    return data


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (real path, size, mtime_ns) → SHA-256 already computed


def verified_sha256(path: Path) -> str:
    """``path``'s SHA-256, computed once per (size, mtime) in this process: checking an artefact before each use
    costs a stat after the first time."""
    stat = path.stat()
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_of(path)
    return _VERIFIED[key]


def verify_artefact(artefact: Path, *, extra: Path | None = None, how: str = "re-export it with dualsr export") -> None:
    """Refuse ``artefact`` (and ``extra``: an IR's ``.bin``, whose hash is the manifest's ``weights_sha256``) when its
    SHA-256 differs from the one its manifest recorded at export: a changed or damaged file is never run."""
    manifest = read_manifest(artefact)
    for path, key in ((artefact, "sha256"), *(((extra, "weights_sha256"),) if extra is not None else ())):
        recorded, actual = manifest.get(key), verified_sha256(path)
        if recorded != actual:
            raise ExportError(
                f"{path}: its SHA-256 is {actual}, but its manifest ({manifest_path(artefact).name}) recorded "
                f"{recorded} at export; the file was changed or damaged since. Delete it and {how} (or run with "
                "--backend torch)"
            )


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, or :class:`ExportError` if it cannot be read."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError
        raise ExportError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from exc
    return {prop.key: prop.value for prop in model.metadata_props}


def graph_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """:func:`onnx_metadata`, refused unless it is a dualsr graph (it carries :data:`GRAPH_KEYS`)."""
    meta = onnx_metadata(path)
    missing = [key for key in GRAPH_KEYS if key not in meta]
    if missing:
        raise ExportError(f"{path}: not a dualsr export (its metadata lacks {', '.join(missing)})")
    return meta


def graph_form(meta: Mapping[str, Any]) -> dict[str, str]:
    """A graph's form (whole cube or band chunk, :mod:`dualsr_deploy.export.onnx`) and its tensors, for its manifest
    and its IR's: what a backend reads to call it."""
    if chunk_bands(meta) is None:
        return {
            "form": "whole",
            "input": "lr (batch, bands, height, width) float32, batch/height/width dynamic",
            "output": "residual (batch, bands, s*height, s*width) float32; add the bicubic skip",
        }
    return {
        "form": "band-chunk",
        "chunk_bands": meta["chunk_bands"],
        "state_channels": meta["state_channels"],
        "input": "planes (batch, chunk_bands, 5, height, width), state (batch, state_channels, height, width), "
        "first (1,): float32",
        "output": "residual (batch, chunk_bands, s*height, s*width), state_out (batch, state_channels, height, "
        "width): float32; add the bicubic skip",
    }


def check_plan_manifest(plan: str | os.PathLike[str]) -> dict[str, Any]:
    """A plan's manifest, refused when it names another GPU or TensorRT version than the running ones, or when the
    file does not match its SHA-256."""
    from dualsr_deploy.runtimes import gpu_identity

    plan = Path(plan)
    manifest_file = manifest_path(plan)
    if not manifest_file.is_file():
        raise ExportError(f"{plan}: no manifest beside the plan ({manifest_file.name}); rebuild it with dualsr export")
    manifest: dict[str, Any] = json.loads(manifest_file.read_text())
    running = gpu_identity()
    for key in ("gpu", "compute_capability", "tensorrt"):
        if manifest.get(key) != running[key]:
            raise ExportError(
                f"{plan}: built for {key} {manifest.get(key)!r}, running on {running[key]!r}; TensorRT plans are tied "
                "to one GPU model and TensorRT version: rebuild with `dualsr export` on this machine"
            )
    verify_artefact(plan, how="rebuild it with dualsr export on this machine")
    return manifest


def check_ir(xml: str | os.PathLike[str]) -> dict[str, object]:
    """An IR's manifest, refused when it is missing or when the ``.xml``/``.bin`` do not match their hashes."""
    xml = Path(xml)
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        raise ExportError(
            f"{xml}: no OpenVINO IR here (need the .xml and its .bin); make one with dualsr export --openvino"
        )
    if not xml.with_name(xml.name + ".json").is_file():
        raise ExportError(
            f"{xml}: no manifest beside the IR ({xml.name}.json); re-export it with dualsr export --openvino"
        )
    manifest = read_manifest(xml)
    if manifest.get("kind") != "openvino":
        raise ExportError(f"{xml}: its manifest is not an OpenVINO IR's (kind {manifest.get('kind')!r})")
    verify_artefact(xml, extra=xml.with_suffix(".bin"), how="re-export it with dualsr export --openvino")
    return manifest


__all__ = [
    "CHUNK_INPUTS",
    "CHUNK_OUTPUTS",
    "GRAPH_KEYS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "check_ir",
    "check_plan_manifest",
    "chunk_bands",
    "graph_filename",
    "graph_form",
    "graph_metadata",
    "ir_path_for",
    "manifest_path",
    "onnx_metadata",
    "plan_path_for",
    "read_manifest",
    "sha256_of",
    "variant_name",
    "verified_sha256",
    "verify_artefact",
    "write_manifest",
]
