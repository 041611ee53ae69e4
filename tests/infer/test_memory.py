"""Tiles sized from measured memory per backend (issue #45, item 4): the measured bytes per window pixel and band
where measured (CPU), scaled to the model's size; the model's estimate elsewhere."""

from __future__ import annotations

import pytest

from dualsr_deploy.archs.coarsr import CoarSRConfig
from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.infer.memory import MARGIN, MEASURED_CPU, estimate, window_bytes


def _core(scale: int, n_feats: int = 16, n_blocks: int = 1) -> FoldedCoarSR:
    return FoldedCoarSR(CoarSRConfig(scale, n_feats, n_blocks))


@pytest.mark.parametrize(("backend", "precision", "scale"), sorted(MEASURED_CPU))
def test_the_shipped_size_on_a_cpu_takes_the_measurement(backend: str, precision: str, scale: int) -> None:
    got = window_bytes(
        _core(scale), backend=backend, precision=precision, device_type="cpu", whole_activations=backend != "torch"
    )
    assert got == int(MEASURED_CPU[(backend, precision, scale)] * MARGIN)


def test_other_sizes_devices_and_precisions() -> None:
    shipped = window_bytes(_core(2), backend="torch", precision="fp32", device_type="cpu", whole_activations=False)
    wide = window_bytes(_core(2, 64, 2), backend="torch", precision="fp32", device_type="cpu", whole_activations=False)
    ratio = estimate(_core(2, 64, 2), False) / estimate(_core(2), False)
    assert abs(wide - MEASURED_CPU[("torch", "fp32", 2)] * MARGIN * ratio) < 1  # scaled, then rounded down
    assert shipped == int(MEASURED_CPU[("torch", "fp32", 2)] * MARGIN)
    on_gpu = window_bytes(_core(2), backend="torch", precision="fp32", device_type="cuda", whole_activations=False)
    assert on_gpu == estimate(_core(2), False)  # nothing measured on a GPU
    mixed = window_bytes(_core(4), backend="torch", precision="bf16-mixed", device_type="cpu", whole_activations=False)
    assert mixed == int(MEASURED_CPU[("torch", "fp32", 4)] * MARGIN)  # its tail is fp32: fp32's measurement
    x3 = window_bytes(_core(3), backend="openvino", precision="fp32", device_type="cpu", whole_activations=True)
    assert x3 == int(
        MEASURED_CPU[("openvino", "fp32", 4)] * MARGIN * estimate(_core(3), True) / estimate(_core(4), True)
    )
