"""Fine-tuning options of ``dualsr train``: frozen BatchNorm statistics and a moving average of the weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dualsr_deploy.checkpoint import read_checkpoint, write_checkpoint
from dualsr_deploy.train import TrainConfig, TrainError, train
from dualsr_deploy.train.state import load_state
from tests.helpers import random_coarsr, resume

TINY = TrainConfig(
    scale=2, n_feats=4, n_blocks=1, batch_size=16, epochs=3, learning_rate=1e-3, log_every_steps=1, schedule="parallel"
)


def _start(tmp_path: Path) -> Path:
    return write_checkpoint(random_coarsr(2, n_feats=4), tmp_path / "start.safetensors", neighbour_rule="paper")


def _buffers(state: dict[str, torch.Tensor], suffix: str) -> dict[str, torch.Tensor]:
    return {name: value for name, value in state.items() if name.endswith(suffix)}


@pytest.mark.parametrize("schedule", ["band", "parallel"])
def test_frozen_batch_norm_keeps_the_starting_statistics(tiny_store: Path, tmp_path: Path, schedule: str) -> None:
    start = _start(tmp_path)
    initial = read_checkpoint(start)[0].state_dict()
    runs = {}
    for mode in ("train", "frozen"):
        config = dataclasses.replace(TINY, max_steps=4, batch_norm=mode, schedule=schedule)  # type: ignore[arg-type]
        train(tiny_store, tmp_path / mode, config, init=start, tensorboard=False)
        runs[mode] = load_state(tmp_path / mode / "last.pt").model
    for suffix in ("running_mean", "running_var"):
        before = _buffers(initial, suffix)
        assert before  # the model has BatchNorm layers
        for name, value in before.items():
            assert torch.equal(runs["frozen"][name], value), name
        # The paper's mode moves them (so the check above could fail).
        assert any(not torch.equal(runs["train"][name], value) for name, value in before.items())
    # The weights themselves are trained in both modes.
    conv = next(name for name in initial if name.endswith("weight_v"))
    assert not torch.equal(runs["frozen"][conv], initial[conv])


def test_the_moving_average_is_what_is_validated_and_written(tiny_store: Path, tmp_path: Path) -> None:
    start = _start(tmp_path)
    initial = read_checkpoint(start)[0].state_dict()
    config = dataclasses.replace(TINY, max_steps=1, ema=0.25, validate_every_steps=1)
    result = train(tiny_store, tmp_path / "ema", config, init=start, tensorboard=False)
    plain = train(tiny_store, tmp_path / "plain", dataclasses.replace(config, ema=0.0), init=start, tensorboard=False)
    state = load_state(tmp_path / "ema" / "last.pt")
    trained = state.model
    # The average does not change training: the raw weights equal a run without it.
    for name, value in load_state(tmp_path / "plain" / "last.pt").model.items():
        assert torch.equal(trained[name], value), name
    # After one step the average is 0.25·start + 0.75·trained, and that is what last.safetensors holds.
    written = read_checkpoint(result.last_weights)[0].state_dict()
    assert state.ema is not None
    for name, value in written.items():
        if value.is_floating_point():
            expected = 0.25 * initial[name] + 0.75 * trained[name]
            torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7, msg=name)
            torch.testing.assert_close(state.ema[name], expected, rtol=1e-6, atol=1e-7, msg=name)
    assert any(not torch.equal(written[name], trained[name]) for name in written if written[name].is_floating_point())
    # Its validation is the average's, not the raw weights'.
    step_one = {
        run: (run_dir / "validation.csv").read_text().splitlines()[2]
        for run, run_dir in (("ema", tmp_path / "ema"), ("plain", tmp_path / "plain"))
    }
    assert step_one["ema"].split(",")[3] != step_one["plain"].split(",")[3]
    assert result.steps == plain.steps == 1


def test_a_resumed_run_keeps_its_moving_average(tiny_store: Path, tmp_path: Path) -> None:
    start = _start(tmp_path)
    whole = dataclasses.replace(TINY, max_steps=8, ema=0.9, batch_norm="frozen")
    train(tiny_store, tmp_path / "whole", whole, init=start, tensorboard=False)
    train(tiny_store, tmp_path / "split", dataclasses.replace(whole, max_steps=3), init=start, tensorboard=False)
    resume(tiny_store, tmp_path / "split", whole)
    a, b = load_state(tmp_path / "whole" / "last.pt"), load_state(tmp_path / "split" / "last.pt")
    assert a.ema is not None
    assert b.ema is not None
    for name in a.ema:
        assert torch.equal(a.ema[name], b.ema[name]), name
    # The run's model card says how it was trained.
    card = (tmp_path / "whole" / "MODEL_CARD.md").read_text()
    assert "BatchNorm statistics frozen" in card
    assert "weights averaged (EMA 0.9)" in card
    # Changing the recipe of a run half done is refused.
    with pytest.raises(TrainError, match="ema"):
        resume(tiny_store, tmp_path / "split", dataclasses.replace(whole, ema=0.5, max_steps=10), "ema")


def test_bad_options() -> None:
    with pytest.raises(TrainError, match=r"ema must be in \[0, 1\)"):
        TrainConfig(scale=2, ema=1.0)
    with pytest.raises(TrainError, match="batch_norm must be train or frozen"):
        TrainConfig(scale=2, batch_norm="fixed")  # type: ignore[arg-type]


def test_the_starting_weights_are_recorded_through_resumes_and_chains(tiny_store: Path, tmp_path: Path) -> None:
    from dualsr_deploy.weights import shipped_weights

    start = _start(tmp_path)
    start_sha = read_checkpoint(start)[1].sha256
    grown = dataclasses.replace(TINY, n_feats=6, max_steps=2)
    train(tiny_store, tmp_path / "a", dataclasses.replace(grown, max_steps=1), init=start, tensorboard=False)
    result = resume(tiny_store, tmp_path / "a", grown)
    # The resumed run still knows where the first part started, and that the weights were grown.
    record = read_checkpoint(result.last_weights)[1].provenance["init"]
    assert record["sha256"] == start_sha
    assert (
        record["weights"]
        == f"start.safetensors (SHA-256 {start_sha}; n_feats 4, n_blocks 1, grown to n_feats 6, n_blocks 1)"
    )
    assert "its_init" not in record
    # A run started from that run's weights records the chain, and its card prints it.
    second = train(tiny_store, tmp_path / "b", grown, init=result.last_weights, tensorboard=False)
    chained = read_checkpoint(second.last_weights)[1].provenance["init"]
    assert chained["its_init"] == record
    assert chained["its_steps"] == 2
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    started = f"- Started from: last.safetensors (SHA-256 {chained['sha256']}; n_feats 6, n_blocks 1)"
    assert f"{started}, itself fine-tuned from start.safetensors" in card
    # Shipped weights are named by family, wherever the file was copied.
    copy = tmp_path / "copied.safetensors"
    copy.write_bytes(shipped_weights(2, "cave").read_bytes())
    shipped = dataclasses.replace(TINY, n_feats=16, max_steps=1)
    third = train(tiny_store, tmp_path / "c", shipped, init=copy, tensorboard=False)
    assert (
        read_checkpoint(third.last_weights)[1]
        .provenance["init"]["weights"]
        .startswith("the cave family's coarsr_x2.safetensors (SHA-256 ")
    )
