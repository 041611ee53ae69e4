"""What one backend call holds, per LR window pixel and band: measured on a CPU per backend × precision × scale
(``benchmarks/tile_memory.py``: growth of the process's peak RSS between windows of one call, 285 bands, the
shipped n_feats-16 models), and used to size tiles and batches from ``--memory-budget``.

Other models (another n_feats, blocks) scale the measurement by how the model's own estimate
(:meth:`FoldedCoarSR.scan_bytes_per_pixel`, :meth:`~FoldedCoarSR.activation_bytes_per_pixel`) changes against the
shipped size; configurations not measured (GPUs, TensorRT, fp16, bf16-mixed) use the estimate, or, on a CPU, fp32's
measurement of the same backend (bf16-mixed holds its tail in fp32).
"""

from __future__ import annotations

import functools
from typing import Any

from dualsr_deploy.archs.coarsr import CoarSRConfig
from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.backends.kinds import backend_kind

# (backend, precision, scale) → bytes per LR window pixel and band, on a CPU; the larger of the two slopes measured
# (windows 48→80→112 LR pixels, 285 bands; 2-core Xeon with AVX512-BF16, torch 2.13, ONNX Runtime, OpenVINO)
MEASURED_CPU: dict[tuple[str, str, int], int] = {
    ("torch", "fp32", 2): 65,
    ("torch", "fp32", 4): 219,
    ("torch", "bf16", 2): 73,
    ("torch", "bf16", 4): 206,
    ("onnx", "fp32", 2): 1805,
    ("onnx", "fp32", 4): 4726,
    ("openvino", "fp32", 2): 1542,
    ("openvino", "fp32", 4): 3266,
    ("openvino", "bf16", 2): 841,
    ("openvino", "bf16", 4): 1784,
}
# band-chunk graphs (what a run makes for ONNX Runtime and OpenVINO on a CPU: dualsr_deploy.backends.kinds.band_chunk):
# a call holds one chunk's activations whatever the band count, besides its input and result, so the bytes per window
# pixel and band fall with the bands. Measured at 31 and 285 bands, same windows and machine
# (benchmarks/results/tile_memory_chunked_2cpu.json), and taken as a + b / bands through both points.
CHUNKED_AT = (31, 285)
MEASURED_CPU_CHUNKED: dict[tuple[str, str, int], tuple[int, int]] = {
    ("onnx", "fp32", 2): (452, 115),
    ("onnx", "fp32", 4): (1104, 297),
    ("openvino", "fp32", 2): (471, 153),
    ("openvino", "fp32", 4): (1188, 294),
    ("openvino", "bf16", 2): (334, 121),
    ("openvino", "bf16", 4): (679, 264),
}
MARGIN = 1.1  # measured once, on one machine: a tenth more for allocator and library differences
MEASURED_WITH = CoarSRConfig(2, 16, 1)  # the shipped models' size (scale set per lookup)


def estimate(core: FoldedCoarSR, whole_activations: bool) -> int:
    """The model's own estimate: its unchunked maps, the ×s result and its pasted copy, and for an exported graph
    every activation at once (~3× the model's peak per pixel)."""
    scale = core.config.scale
    per_pixel = core.scan_bytes_per_pixel() + 4 * 3 * scale * scale
    if whole_activations:
        per_pixel += 3 * core.activation_bytes_per_pixel()
    return per_pixel


def _measured(backend: str, precision: str, scale: int, bands: int, chunked: bool) -> tuple[float, int] | None:
    """The measurement that applies (for ``bands`` bands) and the scale it was made at (the nearest measured one)."""
    for wanted in (precision, "fp32"):  # bf16-mixed and INT8 (not measured): fp32's, an upper bound
        if wanted != precision and precision not in ("bf16-mixed", "int8"):
            continue
        table: dict[tuple[str, str, int], Any] = MEASURED_CPU_CHUNKED if chunked else MEASURED_CPU
        scales = sorted({s for (b, p, s) in table if (b, p) == (backend, wanted)})
        if scales:
            near = min(scales, key=lambda s: (abs(s - scale), -s))
            found = table[(backend, wanted, near)]
            return (_through(found, bands) if chunked else float(found)), near
    return None


def _through(at: tuple[int, int], bands: int) -> float:
    """``a + b / bands`` through the two measurements ``at`` (at :data:`CHUNKED_AT` bands)."""
    (low, high), (few, many) = CHUNKED_AT, at
    b = (few - many) / (1 / low - 1 / high)
    return many - b / high + b / max(bands, 1)


def window_bytes(
    core: FoldedCoarSR, *, backend: str, precision: str, device_type: str, whole_activations: bool, bands: int
) -> int:
    """Bytes a call of ``backend`` holds per LR window pixel and band for ``core`` on ``bands``-band scenes:
    measured where measured (a CPU), scaled to this model's size; else the estimate. Without ``whole_activations``
    an exported graph is a band-chunk graph."""
    own = estimate(core, whole_activations)
    chunked = backend_kind(backend).artefact is not None and not whole_activations  # an exported band-chunk graph
    found = _measured(backend, precision, core.config.scale, bands, chunked) if device_type == "cpu" else None
    if found is None:
        return own
    measured, at_scale = found
    return int(measured * MARGIN * own / _shipped_estimate(at_scale, whole_activations))


@functools.cache
def _shipped_estimate(scale: int, whole_activations: bool) -> int:
    """The estimate for the measured model size at ``scale`` (made once: tiles ask for it per scene)."""
    return estimate(FoldedCoarSR(CoarSRConfig(scale, MEASURED_WITH.n_feats, MEASURED_WITH.n_blocks)), whole_activations)


__all__ = ["CHUNKED_AT", "MEASURED_CPU", "MEASURED_CPU_CHUNKED", "estimate", "window_bytes"]
