"""The per-band CoarSR against the published code's names and outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dualsr_deploy.archs.coarsr import CoarSR, CoarSRConfig, bicubic_upsample, per_band_loop
from dualsr_deploy.archs.neighbours import NeighbourRule
from dualsr_deploy.models import load_reference

# The fixtures are float32 outputs of the published code. Our float32 loop differs from them only by the order
# of float32 operations (observed ≤ 5e-7); 1e-5 is the bound and still 3 orders below any real bug
# (a wrong neighbour or γ moves outputs by > 1e-2 on these weights).
FIXTURE_TOLERANCE = 1e-5


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_state_dict_names_and_shapes_match_published(shared_reference: Path, scale: int) -> None:
    expected = json.loads((shared_reference / "coarsr" / "state_dict_keys_f64.json").read_text())[f"x{scale}"]
    model = CoarSR(CoarSRConfig(scale, n_feats=64, n_blocks=2))
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert sorted(ours) == sorted(expected)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("rule", ["paper", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_band_loop_reproduces_published_outputs(
    shared_reference: Path, scale: int, rule: NeighbourRule, dtype: torch.dtype
) -> None:
    model, _ = load_reference(shared_reference / "coarsr" / f"coarsr_x{scale}_f16_b8.pth")
    fixture = np.load(shared_reference / "coarsr" / f"coarsr_x{scale}_f16_b8.npz")
    lr = torch.from_numpy(fixture["lr"]).to(dtype)
    with torch.no_grad():
        sr = per_band_loop(model.to(dtype), lr, rule)
    expected = torch.from_numpy(fixture[f"sr_{rule}"]).to(dtype)
    assert sr.shape == expected.shape
    assert (sr - expected).abs().max().item() <= FIXTURE_TOLERANCE


def test_bicubic_skip_matches_published_skip(shared_reference: Path) -> None:
    fixture = np.load(shared_reference / "coarsr" / "coarsr_x4_f16_b8.npz")
    skip = bicubic_upsample(torch.from_numpy(fixture["lr"]), 4)
    assert (skip - torch.from_numpy(fixture["bicubic"])).abs().max().item() <= 1e-6


def test_rules_differ_on_published_weights(shared_reference: Path) -> None:
    """Guards the two tests above: if both rules gave the same output, they could not tell the rules apart."""
    fixture = np.load(shared_reference / "coarsr" / "coarsr_x4_f16_b8.npz")
    assert np.abs(fixture["sr_paper"][:, 1:] - fixture["sr_reference"][:, 1:]).max() > 1e-3


def test_band_after_the_first_needs_a_state() -> None:
    model = CoarSR(CoarSRConfig(2, 4, 1)).eval()
    band = torch.rand(1, 3, 3)
    with pytest.raises(ValueError, match="needs the state"):
        model(1, band, torch.rand(1, 6, 6), torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3), None)


def test_unsupported_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="supports scales"):
        CoarSRConfig(scale=5)
