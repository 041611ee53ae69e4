"""The shipped weights: present for ×2 and ×4, in the project's format with their provenance, and better than
bicubic on a CAVE scene they were not trained on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dualsr_deploy import load_coarsr, metrics
from dualsr_deploy.checkpoint import read_checkpoint
from dualsr_deploy.data import read_scene
from dualsr_deploy.data.degrade import degrade
from dualsr_deploy.errors import CheckpointError
from dualsr_deploy.ops.imresize import imresize
from dualsr_deploy.weights import MODEL_CARD, shipped_scales, shipped_weights


@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_weights_load_with_their_provenance(scale: int) -> None:
    _, info = read_checkpoint(shipped_weights(scale))
    assert info.format == "dualsr"
    assert info.scale == scale
    assert info.neighbour_rule == "paper"
    assert info.bands == 31
    held_out = info.provenance["validation_scenes"]
    assert len(held_out) >= 2
    assert not set(held_out) & set(info.provenance["train_scenes"])
    assert f"coarsr_x{scale}.safetensors" in MODEL_CARD.read_text()


def test_scales_without_weights_say_so() -> None:
    assert shipped_scales() == (2, 4)
    with pytest.raises(CheckpointError, match=r"no shipped ×8 weights \(shipped: ×2, ×4\)"):
        shipped_weights(8)


@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_weights_beat_bicubic_on_a_held_out_cave_scene(shared_data: Path, scale: int) -> None:
    held_out = read_checkpoint(shipped_weights(scale))[1].provenance["validation_scenes"][0]
    scene = read_scene(shared_data / "cave" / f"{held_out}_ms")
    hr = torch.from_numpy(scene.cube[:, 128:384, 128:384].copy())  # a 256×256 crop keeps the test quick
    lr = degrade(hr.double(), scale).float()
    model = load_coarsr(shipped_weights(scale))
    with torch.no_grad():
        sr = model(lr.unsqueeze(0))[0].clamp(0, 1)
    bicubic = imresize(lr.double(), scale).clamp(0, 1).float()
    gain = metrics.psnr(sr, hr) - metrics.psnr(bicubic, hr)
    # The model card reports the gain on whole held-out scenes; this crop of `face` measured +1.3 dB (×2) and
    # +1.4 dB (×4) with the shipped weights. 0.5 dB (11 % less MSE) leaves room for retrained weights while
    # failing a model that is broken or barely better than its bicubic skip.
    assert gain > 0.5, f"×{scale} on {held_out}: {gain:+.3f} dB over bicubic"
