"""The upsampling tail composed into one LR convolution, with the edge ring recomputed exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.archs.tail import compose_tail, composed_tail
from dualsr_deploy.export.onnx import _export_module
from tests.helpers import random_coarsr

# Float64 composition changes only the association of sums: observed ≤ 1e-14 at ×8.
FLOAT64_TOLERANCE = 1e-12
# A float32 model with and without it, relative to the largest output: float32 rounding of two summation orders,
# observed ≤ 1.3e-6 on the shipped weights (outputs ~1) and ~1e-6 on random ones (outputs up to ~20).
FLOAT32_TOLERANCE = 5e-6
SIZES = [(1, 1), (1, 7), (2, 2), (3, 5), (4, 4), (9, 13), (20, 17)]


def _tail(scale: int, f: int) -> nn.Sequential:
    torch.manual_seed(scale)
    layers: list[nn.Module] = []
    if scale == 3:
        layers += [nn.Conv2d(f, 9 * f, 3, padding=1), nn.PixelShuffle(3)]
    else:
        for _ in range(scale.bit_length() - 1):
            layers += [nn.Conv2d(f, 4 * f, 3, padding=1), nn.PixelShuffle(2)]
    layers.append(nn.Conv2d(f, 1, 3, padding=1))
    return nn.Sequential(*layers).double().eval()


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_composed_tail_is_the_tail_at_every_size(scale: int) -> None:
    tail = _tail(scale, 6)
    kernel, bias = compose_tail(tail, 6, scale)
    assert kernel.shape == (scale * scale, 6, 5, 5)
    for h, w in SIZES:
        x = torch.randn(2, 6, h, w, dtype=torch.float64)
        with torch.no_grad():
            error = (composed_tail(x, kernel, bias, tail, scale) - tail(x)).abs().max().item()
        assert error <= FLOAT64_TOLERANCE, (h, w)


def test_composed_kernel_alone_differs_on_the_edge_ring() -> None:
    """Without the ring recomputed the result is wrong at the edge, so the ring's repair is what the test above
    checks (the intermediate maps are zero-padded at their own resolution)."""
    tail = _tail(2, 6)
    kernel, bias = compose_tail(tail, 6, 2)
    x = torch.randn(1, 6, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        plain = nn.functional.pixel_shuffle(nn.functional.conv2d(x, kernel, bias, padding=2), 2)
        error = (plain - tail(x)).abs()
    assert error[..., 2:-2, 2:-2].max().item() <= FLOAT64_TOLERANCE
    assert error.max().item() > 1e-3


def test_a_tail_reaching_further_is_refused() -> None:
    tail = nn.Sequential(nn.Conv2d(4, 16, 7, padding=3), nn.PixelShuffle(2), nn.Conv2d(4, 1, 3, padding=1)).double()
    with pytest.raises(ValueError, match="further than 2 LR pixels"):
        compose_tail(tail, 4, 2)


def _ran_composed(core: FoldedCoarSR) -> bool:
    return core._composed is not None  # the composed kernel is made on its first use


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_model_runs_the_composed_tail(scale: int, channels_last: bool) -> None:
    core = fold_coarsr(random_coarsr(scale), "paper").eval().use_channels_last(channels_last)
    lr = torch.rand(1, 7, 11, 9)
    with torch.inference_mode():
        core.compose_tail = False
        plain = core(lr)
        assert not _ran_composed(core)
        core.compose_tail = True
        composed = core(lr)
    assert _ran_composed(core)
    assert (composed - plain).abs().max().item() <= FLOAT32_TOLERANCE * max(1.0, plain.abs().max().item())


@pytest.mark.parametrize("made_in_inference_mode", [False, True])
def test_the_kernel_follows_the_tails_weights(made_in_inference_mode: bool) -> None:
    lr = torch.rand(1, 6, 8, 8)
    with torch.inference_mode(made_in_inference_mode):  # such a model's weights have no version counters
        core = fold_coarsr(random_coarsr(2), "paper").eval()
    with torch.inference_mode():
        core(lr)
        with torch.no_grad():
            core.tail[-1].bias.add_(0.5)  # type: ignore[operator]
        composed = core(lr)
        core.compose_tail = False
        plain = core(lr)
    assert (composed - plain).abs().max().item() <= FLOAT32_TOLERANCE * plain.abs().max().item()


def test_reduced_precision_training_and_export_keep_the_tail() -> None:
    core = fold_coarsr(random_coarsr(2), "paper").eval()
    lr = torch.rand(1, 6, 8, 8)
    bf16 = fold_coarsr(random_coarsr(2), "paper").eval().to(torch.bfloat16)
    with torch.inference_mode():
        bf16(lr.bfloat16())
    assert not _ran_composed(bf16)  # bf16's quality records were measured on the tail as it is
    core.requires_grad_(True)
    core(lr).sum().backward()
    assert not _ran_composed(core)
    assert core.tail[0].weight.grad is not None
    whole, chunk = _export_module(core, "fp32", None), _export_module(core, "fp32", 8)
    assert isinstance(whole, FoldedCoarSR)
    assert not whole.compose_tail
    assert isinstance(chunk.core, FoldedCoarSR)
    assert not chunk.core.compose_tail


def test_a_prepared_model_compiles_without_graph_breaks() -> None:
    """``torch.compile`` (the torch backend's ``--compile``) takes the tail composed beforehand: the cache's check
    would otherwise split the graph at every call (8 breaks for this model without ``prepare_tail``)."""
    core = fold_coarsr(random_coarsr(2), "paper").eval().requires_grad_(False).prepare_tail()
    assert _ran_composed(core)
    lr = torch.rand(1, 6, 12, 10)
    with torch.inference_mode():
        explained = torch._dynamo.explain(core)(lr)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
