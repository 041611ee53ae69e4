"""Degradation: MATLAB bicubic downsampling, fspecial Gaussian blur, seeded noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dualsr_deploy.data.degrade import Blur, degrade, gaussian_blur, modcrop
from dualsr_deploy.errors import InputError
from dualsr_deploy.ops.imresize import imresize


def test_plain_degradation_is_imresize() -> None:
    hr = torch.rand(2, 5, 32, 24, dtype=torch.float64)
    torch.testing.assert_close(degrade(hr, 4), imresize(hr, 0.25), rtol=0, atol=0)
    assert degrade(hr, 4).shape == (2, 5, 8, 6)


def test_fspecial_values() -> None:
    # MATLAB: fspecial('gaussian', 3, 0.5)
    expected = np.array(
        [[0.0113437, 0.0838195, 0.0113437], [0.0838195, 0.6193470, 0.0838195], [0.0113437, 0.0838195, 0.0113437]]
    )
    np.testing.assert_allclose(Blur(3, 0.5).kernel(), expected, atol=5e-8)
    assert Blur(7, 1.5).kernel().sum() == pytest.approx(1.0)


def test_blur_keeps_constants_and_smooths() -> None:
    flat = torch.full((3, 16, 16), 0.4, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(flat, Blur(7, 2.0)), flat)  # replicated borders: no dark frame
    impulse = torch.zeros(1, 15, 15, dtype=torch.float64)
    impulse[0, 7, 7] = 1
    blurred = gaussian_blur(impulse, Blur(5, 1.0))
    np.testing.assert_allclose(blurred[0, 5:10, 5:10].numpy(), Blur(5, 1.0).kernel())


def test_noise_is_seeded_and_clipped() -> None:
    hr = torch.rand(5, 16, 16, dtype=torch.float64)
    a = degrade(hr, 2, noise_sigma=0.05, seed=3)
    b = degrade(hr, 2, noise_sigma=0.05, seed=3)
    c = degrade(hr, 2, noise_sigma=0.05, seed=4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert a.min() >= 0
    assert a.max() <= 1
    assert (a - degrade(hr, 2)).std() == pytest.approx(0.05, rel=0.2)


def test_errors() -> None:
    with pytest.raises(InputError, match="multiple of ×4"):
        degrade(torch.rand(5, 30, 32), 4)
    assert modcrop(torch.rand(5, 30, 33), 4).shape == (5, 28, 32)
    with pytest.raises(InputError, match="odd"):
        Blur(4, 1.0)
    with pytest.raises(InputError, match="SIZE:SIGMA"):
        Blur.parse("7")
