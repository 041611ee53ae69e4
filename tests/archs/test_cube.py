"""The folded, band-parallel cube model against the per-band reference loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dualsr_deploy import load_coarsr
from dualsr_deploy.archs.coarsr import bicubic_upsample, per_band_loop
from dualsr_deploy.archs.cube import CoarSRCube
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.archs.neighbours import NeighbourRule
from dualsr_deploy.errors import InputError
from dualsr_deploy.models import load_reference
from tests.helpers import random_coarsr

# Folding in float64 changes only the association of float64 sums: observed ~1e-16; 1e-10 is the bound.
FLOAT64_TOLERANCE = 1e-10
# Against float32 fixtures / a float32 loop: float32 rounding through ~25 layers, observed ≤ 5e-7.
FLOAT32_TOLERANCE = 1e-5


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("rule", ["paper", "reference"])
def test_cube_model_reproduces_published_outputs(shared_reference: Path, scale: int, rule: NeighbourRule) -> None:
    cube = load_coarsr(shared_reference / "coarsr" / f"coarsr_x{scale}_f16_b8.pth", neighbours=rule)
    fixture = np.load(shared_reference / "coarsr" / f"coarsr_x{scale}_f16_b8.npz")
    with torch.no_grad():
        sr = cube(torch.from_numpy(fixture["lr"]))
    assert (sr - torch.from_numpy(fixture[f"sr_{rule}"])).abs().max().item() <= FLOAT32_TOLERANCE


def test_memory_budget_sets_chunks_and_keeps_results(shared_reference: Path) -> None:
    path = shared_reference / "coarsr" / "coarsr_x4_f16_b8.pth"
    fixture = np.load(path.with_suffix(".npz"))
    whole = load_coarsr(path, pixels_per_call=None)
    per_pixel = whole.core.activation_bytes_per_pixel()
    budgeted = load_coarsr(path, memory_budget=3 * 42 * per_pixel)  # three 6×7 planes per call
    assert budgeted.pixels_per_call == 3 * 42
    lr = torch.from_numpy(fixture["lr"])
    with torch.no_grad():
        assert (budgeted(lr) - whole(lr)).abs().max().item() <= 1e-6
    with pytest.raises(InputError, match="not both"):
        load_coarsr(path, memory_budget=1, pixels_per_call=1)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("rule", ["paper", "reference"])
def test_cube_model_float64_equals_loop_on_published_weights(
    shared_reference: Path, scale: int, rule: NeighbourRule
) -> None:
    path = shared_reference / "coarsr" / f"coarsr_x{scale}_f16_b8.pth"
    cube = load_coarsr(path, neighbours=rule, dtype=torch.float64)
    reference, _ = load_reference(path)
    lr = torch.from_numpy(np.load(path.with_suffix(".npz"))["lr"]).double()
    with torch.no_grad():
        error = (cube(lr) - per_band_loop(reference.double(), lr, rule)).abs().max().item()
    assert error <= FLOAT64_TOLERANCE


@pytest.mark.parametrize(
    ("scale", "shape"),
    [
        (2, (2, 5, 7, 9)),  # B > 1, C = 5 (the minimum), non-square
        (3, (1, 6, 6, 5)),
        (4, (2, 8, 5, 6)),
        (8, (1, 5, 4, 3)),
        (4, (1, 31, 4, 5)),  # a CAVE-like band count
    ],
)
@pytest.mark.parametrize("rule", ["paper", "reference"])
def test_folded_equals_unfolded_on_random_weights(scale: int, shape: tuple[int, ...], rule: NeighbourRule) -> None:
    model = random_coarsr(scale, n_feats=6, n_blocks=2, seed=scale).double()
    lr = torch.rand(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cube = CoarSRCube(fold_coarsr(model, rule, torch.float64))
    with torch.no_grad():
        expected = per_band_loop(model, lr, rule)
        assert (cube(lr) - expected).abs().max().item() <= FLOAT64_TOLERANCE
        cube.pixels_per_call = 3 * shape[2] * shape[3]  # chunks of 3 planes give the same numbers
        assert (cube(lr) - expected).abs().max().item() <= FLOAT64_TOLERANCE
    assert expected.shape == (shape[0], shape[1], scale * shape[2], scale * shape[3])


def test_a_chunked_call_finishes_each_chunk_of_bands_before_the_next() -> None:
    """What bounds a CPU call's memory: body, merge and tail of a chunk of bands run before the next chunk's body,
    so no map of every band plane is ever held (the exported, whole-cube form holds ~4 of them), and the batch's
    cubes go through each chunk together."""
    model = random_coarsr(2, n_feats=6, n_blocks=1, seed=5).double()
    core = fold_coarsr(model, "paper", torch.float64)
    lr = torch.rand(2, 7, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    calls: list[tuple[str, int]] = []
    body, tail = core.body, core._tail

    def logged_body(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(("body", planes.shape[0]))
        return body(planes)

    def logged_tail(x: torch.Tensor) -> torch.Tensor:
        calls.append(("tail", x.shape[0]))
        return tail(x)

    core.body, core._tail = logged_body, logged_tail  # type: ignore[method-assign]
    core.pixels_per_call = 2 * 2 * 5 * 6  # two bands of both cubes a step: chunks of 2, 2, 2, 1 bands
    with torch.no_grad():
        chunked = core(lr)
    assert calls == [("body", 4), ("tail", 4)] * 3 + [("body", 2), ("tail", 2)]
    core.pixels_per_call = None
    with torch.no_grad():
        assert (chunked - core(lr)).abs().max().item() <= FLOAT64_TOLERANCE


@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_cube_agrees_with_float32_loop(channels_last: bool) -> None:
    model = random_coarsr(4, n_feats=8, n_blocks=2, seed=3)
    lr = torch.rand(2, 7, 6, 5, generator=torch.Generator().manual_seed(2))
    cube = CoarSRCube(fold_coarsr(model, "paper").use_channels_last(channels_last))
    with torch.no_grad():
        expected = per_band_loop(model, lr, "paper")
        error = (cube(lr) - expected).abs().max().item()
    # Random weights give outputs of magnitude ~10 (real models: ~1), so the bound is relative to it.
    assert error <= FLOAT32_TOLERANCE * expected.abs().max().item()


def test_rule_is_part_of_the_folded_model() -> None:
    model = random_coarsr(2, seed=4)
    lr = torch.rand(1, 8, 5, 5, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        paper = CoarSRCube(fold_coarsr(model, "paper"))(lr)
        reference = CoarSRCube(fold_coarsr(model, "reference"))(lr)
    assert (paper[:, 0] - reference[:, 0]).abs().max().item() == 0.0  # band 0: same neighbours
    assert (paper[:, 1:] - reference[:, 1:]).abs().max().item() > 1e-3


def test_output_is_residual_plus_bicubic() -> None:
    cube = CoarSRCube(fold_coarsr(random_coarsr(2, seed=6), "paper"))
    lr = torch.rand(1, 5, 4, 4)
    with torch.no_grad():
        assert torch.equal(cube(lr), cube.core(lr) + bicubic_upsample(lr, 2))


@pytest.fixture(scope="module")
def small_cube() -> CoarSRCube:
    return CoarSRCube(fold_coarsr(random_coarsr(2, seed=7), "paper"))


@pytest.mark.parametrize(
    ("lr", "message"),
    [
        (torch.rand(1, 4, 5, 5), "at least 5"),
        (torch.rand(6, 5, 5), "unsqueeze"),
        (torch.randint(0, 65535, (1, 6, 5, 5)), "floating-point"),
        (torch.rand(1, 6, 5, 5, dtype=torch.float64), "float64 but the model is torch.float32"),
        (torch.full((1, 6, 5, 5), float("nan")), "NaN"),
        (torch.full((1, 6, 5, 5), float("inf")), "NaN or infinite"),
        (torch.full((1, 6, 5, 5), 4095.0), "normalised"),
    ],
)
def test_bad_input_is_a_clear_error(small_cube: CoarSRCube, lr: torch.Tensor, message: str) -> None:
    with pytest.raises(InputError, match=message):
        small_cube(lr)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # parity, not speed: full float32 convs
    model = random_coarsr(4, n_feats=8, n_blocks=2, seed=8)
    lr = torch.rand(2, 9, 12, 10, generator=torch.Generator().manual_seed(9), dtype=dtype)
    cpu = CoarSRCube(fold_coarsr(model, "paper", dtype))
    gpu = CoarSRCube(fold_coarsr(model, "paper", dtype)).cuda()
    with torch.no_grad():
        expected = cpu(lr)
        got = gpu(lr.cuda()).cpu()
    # cuDNN picks other summation orders and algorithms (Winograd, FFT): a looser float32 bound than on CPU.
    bound = (1e-4 if dtype == torch.float32 else 1e-10) * expected.abs().max().item()
    assert (got - expected).abs().max().item() <= bound
