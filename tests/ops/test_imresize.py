"""imresize against MATLAB R2019b's own outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dualsr_deploy import imresize
from dualsr_deploy.errors import InputError
from dualsr_deploy.ops.imresize import resize_matrix

# MATLAB's algorithm in float64 reproduces the vectors to ~1e-13 (values up to 224); 1e-10 is the bound.
FLOAT64_TOLERANCE = 1e-10
# float32 has a 6e-8 unit roundoff; a few dozen multiply-adds stay far below the 1e-4 relative bound.
FLOAT32_RELATIVE_TOLERANCE = 1e-4


def _cases(reference: Path) -> list[tuple[str, torch.Tensor, list[int], bool, torch.Tensor]]:
    data = json.loads((reference / "numeric" / "matlab_imresize_vectors.json").read_text())
    return [
        (
            case["name"],
            torch.tensor(data["inputs"][case["input"]], dtype=torch.float64),
            case["size"],
            case["antialiasing"],
            torch.tensor(case["expected"], dtype=torch.float64),
        )
        for case in data["cases"]
    ]


def test_all_matlab_vectors_float64(shared_reference: Path) -> None:
    cases = _cases(shared_reference)
    assert len(cases) == 14
    for name, x, size, antialias, expected in cases:
        out = imresize(x, size=size, antialias=antialias)
        assert out.shape == expected.shape, name
        assert (out - expected).abs().max().item() <= FLOAT64_TOLERANCE, name


def test_all_matlab_vectors_float32(shared_reference: Path) -> None:
    for name, x, size, antialias, expected in _cases(shared_reference):
        out = imresize(x.float(), size=size, antialias=antialias).double()
        error = (out - expected).abs().max().item() / expected.abs().max().item()
        assert error <= FLOAT32_RELATIVE_TOLERANCE, name


def test_antialiasing_changes_shrinking(shared_reference: Path) -> None:
    """Guards the vector tests: the aa and no-aa variants must really differ when shrinking."""
    x = _cases(shared_reference)[2][1]
    assert (imresize(x, 0.5) - imresize(x, 0.5, antialias=False)).abs().max().item() > 0.1


@pytest.mark.parametrize("k", range(4))
def test_scale_form_cases(shared_reference: Path, k: int) -> None:
    data = np.load(shared_reference / "numeric" / "numeric_public.npz")
    out = imresize(torch.from_numpy(data[f"r{k}_in"]), float(data[f"r{k}_scale"]))
    expected = torch.from_numpy(data[f"r{k}_out"])
    assert out.shape == expected.shape
    assert (out - expected).abs().max().item() <= FLOAT64_TOLERANCE


def test_leading_dimensions_are_batched() -> None:
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    out = imresize(x, 0.5)
    assert out.shape == (2, 3, 5, 4)  # ceil(4.5), ceil(3.5), as MATLAB
    assert torch.allclose(out[1, 2], imresize(x[1, 2], 0.5), atol=1e-15)


@pytest.mark.parametrize("scale", [0.3, 0.75, 1.5, 2.5, (0.5, 3.0)])
def test_non_integer_scales_keep_constants(scale: float | tuple[float, float]) -> None:
    """Each output is a normalised weighting of inputs, so a constant image stays constant at any scale."""
    out = imresize(torch.full((13, 11), 0.37, dtype=torch.float64), scale)
    assert (out - 0.37).abs().max().item() <= 1e-15


def test_weight_matrices_are_cached() -> None:
    a = resize_matrix(10, 5, 0.5, True, torch.device("cpu"), torch.float32)
    b = resize_matrix(10, 5, 0.5, True, torch.device("cpu"), torch.float32)
    assert a is b


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: imresize(torch.rand(4, 4)), "exactly one"),
        (lambda: imresize(torch.rand(4, 4), 2, size=(8, 8)), "exactly one"),
        (lambda: imresize(torch.rand(4), 2), r"\(\.\.\., H, W\)"),
        (lambda: imresize(torch.ones(4, 4, dtype=torch.int32), 2), "float32 or float64"),
        (lambda: imresize(torch.rand(4, 4), -1), "positive"),
        (lambda: imresize(torch.rand(4, 4), size=(0, 3)), "positive"),
    ],
)
def test_bad_arguments(call: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()  # type: ignore[operator]


@pytest.mark.parametrize("scale", [0.5, 2.0, 1 / 3])
def test_banded_resize_and_its_rows(scale: float) -> None:
    """``imresize_banded`` is imresize to rounding, on a view as strips are, and its ``rows`` are the whole result's
    rows (to rounding: BLAS may round a one-row product otherwise)."""
    from dualsr_deploy.ops.imresize import imresize_banded

    x = torch.rand(7, 40, 150, generator=torch.Generator().manual_seed(3))[:, 3:37]
    whole = imresize_banded(x, scale, block=16)
    torch.testing.assert_close(whole, imresize(x.contiguous(), scale), rtol=0, atol=2e-6)
    n = whole.shape[-2]
    for rows in (slice(0, n), slice(1, n - 1), slice(2, 3), slice(n - 1, n), slice(0, 1), slice(4, 9)):
        part = imresize_banded(x, scale, block=16, rows=rows)
        assert part.shape[-2] == rows.stop - rows.start
        torch.testing.assert_close(part, whole[..., rows, :], rtol=0, atol=1e-6)
