"""Tiles sized from measured memory per backend (issue #45, item 4): the measured bytes per window pixel and band
where measured (CPU), scaled to the model's size; the model's estimate elsewhere."""

from __future__ import annotations

import pytest

from dualsr_deploy.archs.coarsr import CoarSRConfig
from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.infer.memory import (
    CHUNKED_AT,
    MARGIN,
    MEASURED_CPU,
    MEASURED_CPU_CHUNKED,
    estimate,
    window_bytes,
)


def _core(scale: int, n_feats: int = 16, n_blocks: int = 1) -> FoldedCoarSR:
    return FoldedCoarSR(CoarSRConfig(scale, n_feats, n_blocks))


@pytest.mark.parametrize(("backend", "precision", "scale"), sorted(MEASURED_CPU))
def test_the_shipped_size_on_a_cpu_takes_the_measurement(backend: str, precision: str, scale: int) -> None:
    got = window_bytes(
        _core(scale),
        backend=backend,
        precision=precision,
        device_type="cpu",
        whole_activations=backend != "torch",
        bands=285,
    )
    assert got == int(MEASURED_CPU[(backend, precision, scale)] * MARGIN)


@pytest.mark.parametrize(("backend", "precision", "scale"), sorted(MEASURED_CPU_CHUNKED))
def test_a_band_chunk_graph_takes_its_measurements_and_holds_more_per_band_on_fewer_bands(
    backend: str, precision: str, scale: int
) -> None:
    """A band-chunk graph's call holds one chunk's activations whatever the band count: per band, more on 31 bands
    than on 285; the figure passes through both measurements and falls between and beyond them."""

    def per_band(bands: int) -> int:
        core = _core(scale)
        return window_bytes(
            core, backend=backend, precision=precision, device_type="cpu", whole_activations=False, bands=bands
        )

    few, many = MEASURED_CPU_CHUNKED[(backend, precision, scale)]
    assert abs(per_band(CHUNKED_AT[0]) - few * MARGIN) <= 1
    assert abs(per_band(CHUNKED_AT[1]) - many * MARGIN) <= 1
    figures = [per_band(bands) for bands in (5, 31, 100, 285, 400)]
    assert figures == sorted(figures, reverse=True)
    assert per_band(285) < MEASURED_CPU[(backend, precision, scale)]  # a tenth or less of the whole-cube graph's


def test_other_sizes_devices_and_precisions() -> None:
    shipped = window_bytes(
        _core(2), backend="torch", precision="fp32", device_type="cpu", whole_activations=False, bands=285
    )
    wide = window_bytes(
        _core(2, 64, 2), backend="torch", precision="fp32", device_type="cpu", whole_activations=False, bands=285
    )
    ratio = estimate(_core(2, 64, 2), False) / estimate(_core(2), False)
    assert abs(wide - MEASURED_CPU[("torch", "fp32", 2)] * MARGIN * ratio) < 1  # scaled, then rounded down
    assert shipped == int(MEASURED_CPU[("torch", "fp32", 2)] * MARGIN)
    on_gpu = window_bytes(
        _core(2), backend="torch", precision="fp32", device_type="cuda", whole_activations=False, bands=285
    )
    assert on_gpu == estimate(_core(2), False)  # nothing measured on a GPU
    mixed = window_bytes(
        _core(4), backend="torch", precision="bf16-mixed", device_type="cpu", whole_activations=False, bands=285
    )
    assert mixed == int(MEASURED_CPU[("torch", "fp32", 4)] * MARGIN)  # its tail is fp32: fp32's measurement
    x3 = window_bytes(
        _core(3), backend="openvino", precision="fp32", device_type="cpu", whole_activations=True, bands=285
    )
    assert x3 == int(
        MEASURED_CPU[("openvino", "fp32", 4)] * MARGIN * estimate(_core(3), True) / estimate(_core(4), True)
    )


def test_a_scene_held_in_memory_runs_as_one_tile_when_the_budget_leaves_room() -> None:
    """A call's share is 40 % of the budget, or what two working sets of an in-memory scene leave, when that is more:
    a 100 × 100 × 189 scene that the 40 % cut into 4 tiles runs as 1 (OpenVINO fp32: 9.3 s → 3.5 s), and a scene
    whose window does not fit still gets tiles, as does a streamed strip."""
    from dualsr_deploy.infer.batching import TileRunner
    from dualsr_deploy.infer.options import TILE_SHARE, BackendSpec, InferOptions
    from dualsr_deploy.infer.pool import BackendPool

    spec = BackendSpec.for_run("openvino", scale=2, stage="coarse", device="cpu", weights="airborne")  # no IR needed
    scene = (189, 100, 100)

    def runner(budget: int) -> TileRunner:
        options = InferOptions(scale=2, stage="coarse", backend=spec, memory_budget=budget)
        return TileRunner(BackendPool(spec), options, lambda event: None)

    one_window = 189 * 100 * 100 * runner(1 << 30).window_bytes_per_pixel(2, 189)
    working = InferOptions(scale=2, stage="coarse", backend=spec).working_bytes(scene)
    budget = int(1.5 * one_window) + 2 * working  # room for the whole window beside the scene, not within 40 %
    assert one_window > budget * TILE_SHARE
    fits = runner(budget)
    assert fits.call_share(scene) == budget - 2 * working
    assert fits.auto_tile(2, 189, scene) == 100
    assert fits.count(scene, streamed=False) == 1  # the plan counts the tiles grid() lays (no backend opened here)
    assert fits.count(scene, streamed=True) > 1  # a streamed scene's call keeps the 40 %
    assert runner(one_window // 2 + 2 * working).count(scene, streamed=False) > 1
