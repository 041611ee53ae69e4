"""The band-parallel training schedule, the CPU bf16 default and band windows of mixed-band patch stores."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dualsr_deploy.archs.coarsr import bicubic_upsample, per_band_loop
from dualsr_deploy.data import open_archive, write_scene
from dualsr_deploy.data.patches import PatchRecipe, band_windows, prepare_patches, read_store_info
from dualsr_deploy.data.synth import synthesize
from dualsr_deploy.errors import DataError
from dualsr_deploy.runtimes import CPU_BF16_ENV
from dualsr_deploy.train import TrainConfig, TrainError, train
from dualsr_deploy.train.schedule import BandParallel, autocast_dtype
from tests.helpers import random_coarsr, resume

TINY = TrainConfig(
    scale=2, n_feats=4, n_blocks=1, batch_size=16, epochs=3, learning_rate=1e-3, log_every_steps=1, precision="fp32"
)


@pytest.mark.parametrize("rule", ["paper", "reference"])
def test_band_parallel_form_computes_the_per_band_loop(rule: str) -> None:
    model = random_coarsr(2, n_feats=6, seed=3).double()
    lr = torch.rand(2, 7, 9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = per_band_loop(model, lr, rule)  # type: ignore[arg-type]
        got = BandParallel(model, rule)(lr, bicubic_upsample(lr, 2))  # type: ignore[arg-type]
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-11)


def _losses(run: Path) -> list[float]:
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [entry["loss"] for entry in lines if entry["kind"] == "train"]


def test_parallel_schedule_trains_and_says_so_on_its_card(tiny_store: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, schedule="parallel", max_steps=40)
    result = train(tiny_store, tmp_path / "whole", config, tensorboard=False)  # exact resume: tests/train/test_loop.py
    losses = _losses(tmp_path / "whole")
    assert result.steps == 40
    # One update per batch (not one per band): 40 Adam steps at lr 1e-3 still halve the L1 of the random start.
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["schedule"] == "parallel"
    card = (tmp_path / "whole" / "MODEL_CARD.md").read_text()
    assert "band-parallel updates (one per batch)" in card
    assert "precision fp32 (fp32)" in card


def test_a_resume_cannot_change_the_schedule(tiny_store: Path, tmp_path: Path) -> None:
    train(tiny_store, tmp_path / "run", dataclasses.replace(TINY, max_steps=2), tensorboard=False)
    with pytest.raises(TrainError, match="schedule"):
        resume(tiny_store, tmp_path / "run", dataclasses.replace(TINY, schedule="parallel", max_steps=4), "schedule")
    with pytest.raises(TrainError, match="schedule must be"):
        dataclasses.replace(TINY, schedule="diagonal")  # type: ignore[arg-type]


def test_auto_precision_follows_the_cpu_bf16_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert autocast_dtype("auto", cpu) is torch.bfloat16
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16  # asked for explicitly: honoured
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16


def test_band_windows() -> None:
    assert band_windows(10, 5) == [0, 5]
    assert band_windows(12, 5) == [0, 5, 7]  # the last window ends on the last band
    assert band_windows(5, 5) == [0]
    assert band_windows(4, 5) == []


def test_a_band_window_store_takes_scenes_of_mixed_band_counts(tmp_path: Path) -> None:
    for name, bands in (("a", 7), ("b", 13), ("c", 5), ("v", 9)):
        write_scene(tmp_path / f"{name}.h5", synthesize(len(name), size=32, bands=bands))
    store = tmp_path / "store.h5"
    recipe = PatchRecipe(scale=2, lr_patch=8, rescales=(1.0,), validation=("v",), bands=6)
    info = prepare_patches(open_archive(tmp_path, recursive=False), store, recipe)
    assert info.bands == 6
    assert info.train_scenes == ("a", "b")
    assert "fewer than the 6-band window" in info.skipped["c"]
    # 4 patches per 32-pixel scene; a: 2 windows (0, 1), b: 3 windows (0, 6, 7).
    assert info.patches == 4 * 2 + 4 * 3
    assert read_store_info(store).validation_scenes == ("v",)
    with pytest.raises(DataError, match="at least 5 bands"):
        prepare_patches(
            open_archive(tmp_path, recursive=False), tmp_path / "x.h5", dataclasses.replace(recipe, bands=4)
        )
