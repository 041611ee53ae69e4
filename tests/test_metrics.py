"""Metrics against the published MATLAB scripts (numeric_public.json) and scikit-image."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dualsr_deploy import metrics
from dualsr_deploy.errors import InputError

# The bound; float64 accumulation reproduces MATLAB to ~1e-14 relative here.
RELATIVE_TOLERANCE = 1e-6


@pytest.mark.parametrize("k", [0, 1])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reproduces_matlab_metrics(shared_reference: Path, k: int, dtype: torch.dtype) -> None:
    data = np.load(shared_reference / "numeric" / "numeric_public.npz")
    expected = json.loads((shared_reference / "numeric" / "numeric_public.json").read_text())["metrics"][k]
    sr = torch.from_numpy(data[f"metrics{k}_sr"]).to(dtype)
    hr = torch.from_numpy(data[f"metrics{k}_hr"]).to(dtype)
    got = metrics.evaluate(sr, hr, scale=expected["scale"])
    assert set(got) == set(metrics.METRIC_NAMES)
    for name in metrics.METRIC_NAMES:
        assert got[name] == pytest.approx(expected[name], rel=RELATIVE_TOLERANCE), name


def test_ssim_agrees_with_scikit_image_per_band(shared_reference: Path) -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics")
    data = np.load(shared_reference / "numeric" / "numeric_public.npz")
    sr, hr = data["metrics0_sr"], data["metrics0_hr"]
    ours = metrics.band_ssim(torch.from_numpy(sr), torch.from_numpy(hr))
    for band in range(sr.shape[0]):
        theirs = skimage_metrics.structural_similarity(
            hr[band], sr[band], data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert ours[band].item() == pytest.approx(theirs, rel=1e-9)


def test_identical_cubes() -> None:
    cube = torch.rand(5, 16, 16, dtype=torch.float64)
    got = metrics.evaluate(cube, cube.clone(), scale=4)
    assert got["psnr"] == math.inf
    assert got["mpsnr"] == math.inf
    assert got["rmse"] == 0.0
    assert got["ergas"] == 0.0
    assert got["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert got["cc"] == pytest.approx(1.0, abs=1e-12)
    assert got["sam"] < 1e-5  # acos near 1 amplifies rounding: ~1e-6° is the float64 floor


def test_band_metrics_have_one_value_per_band() -> None:
    sr, hr = torch.rand(7, 12, 13), torch.rand(7, 12, 13)
    per_band = metrics.band_metrics(sr, hr)
    assert {k: tuple(v.shape) for k, v in per_band.items()} == {k: (7,) for k in ("psnr", "ssim", "rmse", "cc")}
    assert per_band["psnr"].mean().item() == pytest.approx(metrics.mpsnr(sr, hr))


def test_psnr_of_known_error() -> None:
    hr = torch.zeros(5, 4, 4, dtype=torch.float64)
    assert metrics.psnr(hr + 0.1, hr) == pytest.approx(20.0)


def test_sam_of_known_angle() -> None:
    hr = torch.zeros(2, 3, 3, dtype=torch.float64)
    sr = torch.zeros(2, 3, 3, dtype=torch.float64)
    hr[0], sr[0], sr[1] = 1.0, 1.0, 1.0  # spectra (1, 0) and (1, 1): 45°
    assert metrics.sam(sr, hr) == pytest.approx(45.0, rel=1e-12)


@pytest.mark.parametrize(
    ("sr", "hr", "message"),
    [
        (torch.rand(5, 16, 16), torch.rand(5, 16, 15), "differ in shape"),
        (torch.rand(16, 16), torch.rand(16, 16), r"\(C, H, W\)"),
        (torch.ones(5, 16, 16, dtype=torch.int64), torch.ones(5, 16, 16, dtype=torch.int64), "floating-point"),
        (torch.rand(5, 8, 8), torch.rand(5, 8, 8), "too small"),
    ],
)
def test_bad_input(sr: torch.Tensor, hr: torch.Tensor, message: str) -> None:
    with pytest.raises(InputError, match=message):
        metrics.evaluate(sr, hr, scale=4)


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    sr, hr = torch.rand(6, 40, 30), torch.rand(6, 40, 30)
    cpu = metrics.evaluate(sr, hr, scale=2)
    gpu = metrics.evaluate(sr.cuda(), hr.cuda(), scale=2)
    for name in metrics.METRIC_NAMES:
        assert gpu[name] == pytest.approx(cpu[name], rel=1e-9), name


def test_masked_metrics_equal_the_whole_image_ones_on_a_full_mask_and_ignore_masked_pixels() -> None:
    """Tolerance 1e-12: the same sums in another order (SSIM averages the same window values)."""
    generator = torch.Generator().manual_seed(0)
    hr = torch.rand(6, 30, 30, dtype=torch.float64, generator=generator)
    sr = (hr + 0.01 * torch.randn(hr.shape, dtype=torch.float64, generator=generator)).clamp(0, 1)
    full = metrics.evaluate(sr, hr, scale=4)
    masked = metrics.evaluate_masked(sr, hr, torch.ones(30, 30, dtype=torch.bool), scale=4)
    for name, value in full.items():
        assert masked[name] == pytest.approx(value, abs=1e-12), name
    valid = torch.ones(30, 30, dtype=torch.bool)
    valid[:, :12] = False
    spoiled = sr.clone()
    spoiled[:, :, :12] = 0.5  # garbage where the mask is False changes nothing
    assert metrics.evaluate_masked(spoiled, hr, valid, scale=4) == metrics.evaluate_masked(sr, hr, valid, scale=4)
