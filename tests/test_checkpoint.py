"""Reading both checkpoint formats, writing ours, and refusing what is not a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from dualsr_deploy import load_coarsr
from dualsr_deploy.checkpoint import read_checkpoint, write_checkpoint
from dualsr_deploy.errors import CheckpointError, ScaleMismatchError
from tests.helpers import random_coarsr


def test_published_dict_with_module_prefix(shared_reference: Path) -> None:
    path = shared_reference / "coarsr" / "coarsr_x4_f16_b8.pth"
    _, info = read_checkpoint(path)
    assert (info.format, info.scale, info.n_feats, info.n_blocks) == ("published", 4, 16, 2)
    assert info.neighbour_rule == "reference"
    assert info.rule_source == "published-format default"
    assert info.epoch is not None


def test_published_bare_state_dict(shared_reference: Path) -> None:
    _, info = read_checkpoint(shared_reference / "coarsr" / "coarsr_x2_f16_b8.pth")
    assert (info.scale, info.n_feats) == (2, 16)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_scale_and_size_are_inferred(tmp_path: Path, scale: int) -> None:
    model = random_coarsr(scale, n_feats=5, n_blocks=3)
    path = tmp_path / "model.pth"
    torch.save({"epoch": 7, "model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    _, info = read_checkpoint(path)
    assert (info.scale, info.n_feats, info.n_blocks, info.epoch) == (scale, 5, 3, 7)


def test_own_format_round_trip(tmp_path: Path) -> None:
    model = random_coarsr(4, n_feats=6, n_blocks=2, seed=11)
    path = write_checkpoint(
        model, tmp_path / "x4.safetensors", neighbour_rule="paper", bands=31, provenance={"data": "synthetic"}
    )
    loaded, info = read_checkpoint(path)
    assert info.format == "dualsr"
    assert (info.neighbour_rule, info.rule_source, info.bands) == ("paper", "metadata", 31)
    assert info.provenance == {"data": "synthetic"}
    assert info.version is not None
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file of the atomic write was left behind"


def test_load_coarsr_takes_rule_from_metadata_unless_told(tmp_path: Path) -> None:
    path = write_checkpoint(random_coarsr(2), tmp_path / "m.safetensors", neighbour_rule="paper")
    assert load_coarsr(path).neighbours == "paper"
    assert load_coarsr(path, neighbours="reference").neighbours == "reference"


def test_wrong_scale_for_the_request(shared_reference: Path) -> None:
    with pytest.raises(ScaleMismatchError, match="×4 model, but ×2 was requested"):
        load_coarsr(shared_reference / "coarsr" / "coarsr_x4_f16_b8.pth", scale=2)


def test_random_bytes_are_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "noise.pth"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match=r"noise\.pth: not a checkpoint \(neither a dualsr \.safetensors"):
        read_checkpoint(path)
    text = tmp_path / "README.md"  # `--weights README.md`: said plainly, not as "pickled objects"
    text.write_text("# not weights\n")
    with pytest.raises(CheckpointError, match=r"README\.md: not a checkpoint"):
        read_checkpoint(text)


def test_truncated_checkpoint(tmp_path: Path, shared_reference: Path) -> None:
    data = (shared_reference / "coarsr" / "coarsr_x2_f16_b8.pth").read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth"):
        read_checkpoint(path)


def test_truncated_safetensors(tmp_path: Path) -> None:
    path = write_checkpoint(random_coarsr(2), tmp_path / "m.safetensors", neighbour_rule="paper")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=r"m\.safetensors"):
        read_checkpoint(path)


def test_pickled_objects_are_never_loaded(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    # Training scripts often save their argparse namespace: an arbitrary object that weights_only refuses.
    torch.save({"model": random_coarsr(2).state_dict(), "args": argparse.Namespace(scale=2)}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_checkpoint(path)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    state = random_coarsr(2).state_dict()
    del state["conv.0.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"broken\.pth.*missing keys conv\.0\.bias.*unexpected keys extra"):
        read_checkpoint(path)


def test_shapes_that_do_not_fit_are_named(tmp_path: Path) -> None:
    state = random_coarsr(2).state_dict()
    state["GFM_intra_one.gamma"] = torch.ones(2, 2)
    path = tmp_path / "shapes.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"GFM_intra_one\.gamma \(2, 2\)"):
        read_checkpoint(path)


def test_other_model_is_not_coarsr(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not a CoarSR state dict"):
        read_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "absent.pth")


def test_own_format_needs_safetensors_suffix(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"\.safetensors"):
        write_checkpoint(random_coarsr(2), tmp_path / "m.pth", neighbour_rule="paper")
