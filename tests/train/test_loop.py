"""The training loop on a tiny model: the loss falls, a resumed run equals an uninterrupted one, every output of
the run folder is usable, and bad stores, scales and resume files are refused with clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import h5py
import pytest
import torch

from dualsr_deploy.checkpoint import read_checkpoint, write_checkpoint
from dualsr_deploy.errors import DataError
from dualsr_deploy.train import TrainConfig, TrainError, TrainEvent, train
from dualsr_deploy.train.state import load_state
from tests.helpers import random_coarsr, resume

# 21 batches of 16 per epoch on the tiny store (42 patches × 8 augmentations).
TINY = TrainConfig(scale=2, n_feats=4, n_blocks=1, batch_size=16, epochs=3, learning_rate=1e-3, log_every_steps=1)


def _losses(run: Path) -> list[float]:
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [entry["loss"] for entry in lines if entry["kind"] == "train"]


def test_loss_falls_and_the_run_folder_is_complete(tiny_store: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, max_steps=30, validate_every_steps=10)
    events: list[TrainEvent] = []
    result = train(tiny_store, tmp_path / "run", config, progress=events.append, tensorboard=False)
    losses = _losses(tmp_path / "run")
    assert len(losses) == 30
    # L1 of a random initialisation against what 30 Adam steps × 6 band updates reach; a factor of 2 is far
    # outside step-to-step noise (the residual starts as noise of the size of the signal's detail).
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert result.stop_reason == "max_steps"
    assert result.steps == 30
    assert result.epochs_done == 1
    assert [e.kind for e in events].count("validation") == 4  # steps 10, 20, 21 (the epoch end), 30
    rows = (tmp_path / "run" / "validation.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,seconds,psnr,ssim,sam,bicubic_psnr")
    assert len(rows) == 5
    # The best weights load as an ordinary checkpoint, with the rule and the provenance recorded.
    assert result.best_weights is not None
    _model, info = read_checkpoint(result.best_weights)
    assert (info.scale, info.n_feats, info.neighbour_rule, info.bands) == (2, 4, "paper", 6)
    assert info.provenance["validation_scenes"] == ["s3"]
    assert info.provenance["validation"]["psnr"] == pytest.approx(result.best["psnr"])
    assert read_checkpoint(result.last_weights)[1].provenance["steps"] == 30


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_state(path).model


@pytest.mark.parametrize("schedule", ["band", "parallel"])
def test_a_resumed_run_equals_an_uninterrupted_one(tiny_store: Path, tmp_path: Path, schedule: str) -> None:
    # 25 steps cross the first epoch's end (21): scheduler step, validation and the batch order of epoch 2.
    whole = dataclasses.replace(TINY, max_steps=25, validate_every_steps=7, schedule=schedule)  # type: ignore[arg-type]
    train(tiny_store, tmp_path / "whole", whole, tensorboard=False)
    first = train(tiny_store, tmp_path / "split", dataclasses.replace(whole, max_steps=12), tensorboard=False)
    assert first.stop_reason == "max_steps"
    resumed = resume(tiny_store, tmp_path / "split", whole)
    assert resumed.steps == 25
    a, b = _weights(tmp_path / "whole" / "last.pt"), _weights(tmp_path / "split" / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit-exact: same batches, same order, same optimiser state
    assert _losses(tmp_path / "whole") == _losses(tmp_path / "split")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_at_a_batch_boundary_and_leaves_a_resume_file(
    tiny_store: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    previous = signal.getsignal(signum)

    def interrupt(event: TrainEvent) -> None:
        if event.kind == "step" and event.step == 3:
            os.kill(os.getpid(), signum)

    result = train(tiny_store, tmp_path / "run", TINY, progress=interrupt, tensorboard=False)
    assert result.stop_reason == "interrupted"
    state = load_state(tmp_path / "run" / "last.pt")
    assert state.position.step == 3
    assert signal.getsignal(signum) is previous  # the handler is put back


def test_bf16_autocast_runs(tiny_store: Path, tmp_path: Path) -> None:
    # The GPU default is bf16 autocast; CPU autocast exercises the same code path.
    result = train(
        tiny_store, tmp_path / "run", dataclasses.replace(TINY, max_steps=2, precision="bf16"), tensorboard=False
    )
    assert result.steps == 2
    assert all(
        torch.isfinite(v).all() for v in _weights(tmp_path / "run" / "last.pt").values() if v.is_floating_point()
    )


def test_init_from_weights(tiny_store: Path, tmp_path: Path) -> None:
    start = write_checkpoint(random_coarsr(2, n_feats=4), tmp_path / "start.safetensors", neighbour_rule="paper")
    config = dataclasses.replace(TINY, max_steps=1, validate_every_steps=1)
    result = train(tiny_store, tmp_path / "run", config, init=start, tensorboard=False)
    assert result.steps == 1
    # The starting weights are validated first (step 0): fine-tuning is measured against where it began.
    rows = (tmp_path / "run" / "validation.csv").read_text().splitlines()
    assert rows[1].startswith("0,0,")
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]
    # A larger run grows the smaller weights into its size: it starts where they were (the same validation).
    grown = train(
        tiny_store,
        tmp_path / "grown",
        dataclasses.replace(config, n_feats=6, n_blocks=2),
        init=start,
        tensorboard=False,
    )
    assert grown.steps == 1
    grown_rows = (tmp_path / "grown" / "validation.csv").read_text().splitlines()
    assert grown_rows[1].split(",")[3] == rows[1].split(",")[3]  # step-0 PSNR, to every printed digit
    with pytest.raises(TrainError, match=r"n_feats=4.*a smaller one of the same scale"):
        train(tiny_store, tmp_path / "other", dataclasses.replace(TINY, n_feats=3), init=start)


def test_bad_stores(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match="cannot open the patch store"):
        train(garbage, tmp_path / "run", TINY)
    not_a_store = tmp_path / "plain.h5"
    with h5py.File(not_a_store, "w") as handle:
        handle["x"] = [1, 2, 3]
    with pytest.raises(DataError, match="not a patch store"):
        train(not_a_store, tmp_path / "run", TINY)
    with pytest.raises(DataError, match="no such"):
        train(tmp_path / "missing.h5", tmp_path / "run", TINY)


def test_empty_store(tiny_store: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.h5"
    with h5py.File(tiny_store, "r") as source, h5py.File(empty, "w") as target:
        target.attrs["dualsr_patch_store"] = source.attrs["dualsr_patch_store"]
        target.create_dataset("train/hr", shape=(0, 6, 16, 16), dtype="f4")
    with pytest.raises(DataError, match="no training patches"):
        train(empty, tmp_path / "run", TINY)


def test_scale_mismatch_between_store_and_model(tiny_store: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=r"a ×2 patch store, but the model is ×4"):
        train(tiny_store, tmp_path / "run", dataclasses.replace(TINY, scale=4))


def test_batch_larger_than_the_store(tiny_store: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="no full batch"):
        train(tiny_store, tmp_path / "run", dataclasses.replace(TINY, batch_size=100_000))


def test_resume_files_that_do_not_fit(tiny_store: Path, tmp_path: Path) -> None:
    train(tiny_store, tmp_path / "run", dataclasses.replace(TINY, max_steps=1), tensorboard=False)
    last = tmp_path / "run" / "last.pt"
    with pytest.raises(TrainError, match="has done 1 steps, its --max-steps is 1"):
        train(tiny_store, tmp_path / "run", resume=last)
    with pytest.raises(TrainError, match="already holds a training run"):
        train(tiny_store, tmp_path / "run", TINY)
    with pytest.raises(TrainError, match=r"another model or recipe.*n_feats: resume file 4, requested 8"):
        train(
            tiny_store,
            tmp_path / "run",
            dataclasses.replace(TINY, n_feats=8),
            resume=last,
            given=frozenset({"n_feats"}),
        )
    weights = write_checkpoint(random_coarsr(2, n_feats=4), tmp_path / "w.safetensors", neighbour_rule="paper")
    with pytest.raises(TrainError, match=r"not a dualsr training state.*--init"):
        train(tiny_store, tmp_path / "run", TINY, resume=weights)
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    with pytest.raises(TrainError, match="not a dualsr training state"):
        train(tiny_store, tmp_path / "run", TINY, resume=other)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(TrainError, match="not a readable resume file"):
        train(tiny_store, tmp_path / "run", TINY, resume=broken)
