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
from dualsr_deploy.weights import MODEL_CARD, model_card, shipped_scales, shipped_weights


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
    with pytest.raises(
        CheckpointError, match=r"no shipped cave ×8 weights \(shipped: cave: ×2, ×4; airborne: ×2, ×4\)"
    ):
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


def test_weight_families_and_their_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dualsr_deploy.cli.main import app
    from dualsr_deploy.errors import InputError
    from dualsr_deploy.weights import list_shipped, resolve_weights

    assert shipped_weights(4, "cave") == shipped_weights(4)
    assert resolve_weights("cave", 2) == shipped_weights(2)
    assert resolve_weights(None, 4) is None
    assert shipped_scales("airborne") == (2, 4)
    with pytest.raises(CheckpointError, match=r"no shipped airborne ×8 weights \(shipped: airborne: ×2, ×4; cave: ×2"):
        shipped_weights(8, "airborne")
    with pytest.raises(InputError, match="unknown weights family 'hyperion'"):
        shipped_weights(4, "hyperion")
    with pytest.raises(CheckpointError, match="neither a weights family"):
        resolve_weights("hyperion", 4)
    rows = {(w.family, w.scale): w for w in list_shipped()}
    assert set(rows) == {("cave", 2), ("cave", 4), ("airborne", 2), ("airborne", 4)}
    for row in rows.values():
        assert row.validation["psnr"] > row.validation["bicubic_psnr"]
    listed = CliRunner().invoke(app, ["weights"], env={"COLUMNS": "160"})
    assert listed.exit_code == 0, listed.output
    assert "coarsr_x4.safetensors" in listed.output
    assert "airborne: model card" in listed.output
    refused = CliRunner().invoke(
        app, ["infer", str(tmp_path), "-o", str(tmp_path / "o"), "--weights", "airborne", "--scale", "8"]
    )
    assert refused.exit_code == 2
    assert "no shipped airborne ×8 weights" in " ".join(refused.output.split())


AIRBORNE_HELD_OUT = ("san_diego_crop", "pavia_centre_crop")


def test_airborne_weights_load_with_their_provenance() -> None:
    for scale in (2, 4):
        _, info = read_checkpoint(shipped_weights(scale, "airborne"))
        assert (info.format, info.scale, info.neighbour_rule) == ("dualsr", scale, "paper")
        assert set(info.provenance["validation_scenes"]) == set(AIRBORNE_HELD_OUT)
        assert not set(AIRBORNE_HELD_OUT) & set(info.provenance["train_scenes"])
        assert f"airborne/coarsr_x{scale}.safetensors" in model_card("airborne").read_text()


def test_airborne_weights_beat_the_cave_weights_on_held_out_airborne_scenes(shared_data: Path) -> None:
    """What the airborne family is for: on the held-out airborne scenes (never trained on) its ×4 CoarSR scores a
    higher mean PSNR than the cave ×4 weights, and both beat bicubic. The card gives +0.054 dB of mean gain
    over cave; the comparison is strict, so weights no better than cave's fail it."""
    scores: dict[str, list[float]] = {"airborne": [], "cave": [], "bicubic": []}
    for name in AIRBORNE_HELD_OUT:
        hr = torch.from_numpy(read_scene(shared_data / "remote" / f"{name}.mat").cube.copy())
        lr = degrade(hr.double(), 4).float()
        for family in ("airborne", "cave"):
            with torch.no_grad():
                sr = load_coarsr(shipped_weights(4, family))(lr.unsqueeze(0))[0].clamp(0, 1)
            scores[family].append(metrics.psnr(sr, hr))
        scores["bicubic"].append(metrics.psnr(imresize(lr.double(), 4).clamp(0, 1).float(), hr))
    mean = {family: sum(values) / len(values) for family, values in scores.items()}
    assert mean["airborne"] > mean["cave"] > mean["bicubic"], scores
