"""The fine stage against MATLAB's backprojection.m outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dualsr_deploy import backproject, imresize
from dualsr_deploy.errors import InputError
from dualsr_deploy.ops.backproject import sam_weight

FLOAT64_TOLERANCE = 1e-9  # the bound; observed ~2e-15
FLOAT32_TOLERANCE = 1e-5  # the bound; observed ~1e-7 (values in [0, 1])


def _case(reference: Path, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    data = np.load(reference / "numeric" / "numeric_public.npz")
    weight = json.loads((reference / "numeric" / "numeric_public.json").read_text())["fine"][k]["sam_weight"]
    return (
        torch.from_numpy(data[f"fine{k}_im_h"]),
        torch.from_numpy(data[f"fine{k}_im_l"]),
        torch.from_numpy(data[f"fine{k}_fine"]),
        weight,
    )


@pytest.mark.parametrize("k", [0, 1])
def test_reproduces_matlab_fine_stage(shared_reference: Path, k: int) -> None:
    im_h, im_l, expected, weight = _case(shared_reference, k)
    assert sam_weight(imresize(im_h, 0.5), im_l).item() == pytest.approx(weight, rel=1e-9, abs=1e-12)
    assert (backproject(im_h, im_l) - expected).abs().max().item() <= FLOAT64_TOLERANCE
    out32 = backproject(im_h.float(), im_l.float())
    assert out32.dtype == torch.float32
    assert (out32.double() - expected).abs().max().item() <= FLOAT32_TOLERANCE


def test_case_zero_has_a_weight_below_one(shared_reference: Path) -> None:
    """Guards the test above: case 0 exercises the SAM weighting, case 1 the cap."""
    assert _case(shared_reference, 0)[3] < 0.5
    assert _case(shared_reference, 1)[3] == 1.0


def test_batch_uses_one_weight_per_scene(shared_reference: Path) -> None:
    cases = [_case(shared_reference, k) for k in (0, 1)]
    batch = backproject(torch.stack([c[0] for c in cases]), torch.stack([c[1] for c in cases]))
    for k, case in enumerate(cases):
        assert (batch[k] - case[2]).abs().max().item() <= FLOAT64_TOLERANCE


def test_iterations_move_towards_consistency() -> None:
    generator = torch.Generator().manual_seed(0)
    im_l = 0.2 + 0.6 * torch.rand(6, 8, 8, dtype=torch.float64, generator=generator)
    im_h = imresize(im_l, 2) + 0.05 * torch.rand(6, 16, 16, dtype=torch.float64, generator=generator)
    errors = [(imresize(backproject(im_h, im_l, iterations=n), 0.5) - im_l).abs().mean().item() for n in (1, 5, 20)]
    assert errors[0] > errors[1] > errors[2]


def test_lr_form_with_scale_factor() -> None:
    lr = torch.rand(5, 6, 7, dtype=torch.float64)
    sr = imresize(lr, 3)
    assert backproject(sr, lr, factor=3).shape == (5, 18, 21)


@pytest.mark.parametrize(
    ("im_h", "im_l", "kwargs", "message"),
    [
        (torch.rand(3, 8, 8), torch.rand(3, 5, 4), {}, "reduced by factor 2"),
        (torch.rand(3, 9, 8), torch.rand(3, 4, 4), {}, "reduced by factor 2"),
        (torch.rand(3, 8, 8), torch.rand(2, 3, 4, 4), {}, "same rank"),
        (torch.rand(3, 8, 8), torch.rand(3, 4, 4, dtype=torch.float64), {}, "dtype"),
        (torch.rand(3, 8, 8), torch.rand(3, 4, 4), {"iterations": 0}, "iterations"),
        (torch.rand(3, 8, 8), torch.rand(3, 4, 4), {"factor": 1}, "factor"),
    ],
)
def test_bad_input(im_h: torch.Tensor, im_l: torch.Tensor, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InputError, match=message):
        backproject(im_h, im_l, **kwargs)


def test_clip_range_in_place_is_the_same_clip() -> None:
    """Clipping a streamed strip in place gives what the copying clip gives, per band floor or [0, 1]."""
    from dualsr_deploy.ops.fine import clip_range

    values = torch.linspace(-0.5, 1.5, 3 * 4 * 5).reshape(3, 4, 5)
    floor = torch.tensor([-0.2, 0.0, -1.0])
    for low in (None, floor):
        expected = clip_range(values, low)
        assert float(expected.min()) >= -1.0  # the copy leaves values as they were
        assert float(values.max()) == 1.5
        strip = values.clone()
        result = clip_range(strip, low, in_place=True)
        assert result.data_ptr() == strip.data_ptr()
        assert torch.equal(result, expected)
    assert float(clip_range(values, floor)[0].min()) == pytest.approx(-0.2)
