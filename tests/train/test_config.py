"""TrainConfig: the recipe's defaults, refused values, and what a resumed run may change."""

from __future__ import annotations

import pytest

from dualsr_deploy.train import TrainConfig, TrainError


def test_defaults_are_the_published_recipe() -> None:
    config = TrainConfig(scale=4)
    assert (config.n_feats, config.n_blocks, config.batch_size) == (64, 2, 64)
    assert (config.learning_rate, config.betas, config.lr_step_epochs, config.lr_gamma) == (1e-4, (0.9, 0.999), 30, 0.5)
    assert config.neighbour_rule == "paper"
    assert TrainConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "options",
    [{"scale": 5}, {"n_feats": 0}, {"batch_size": 0}, {"learning_rate": 0.0}, {"precision": "fp8"}, {"max_steps": 0}],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(TrainError):
        TrainConfig(**{"scale": 2, **options})  # type: ignore[arg-type]


def test_a_resumed_run_may_change_its_length_but_not_its_model() -> None:
    saved = TrainConfig(scale=2, n_feats=8, epochs=10)
    longer = saved.resumed_with(TrainConfig(scale=2, epochs=20, n_feats=99), {"epochs"})
    assert longer.epochs == 20
    assert longer.n_feats == 8  # not given, so the saved value stands
    with pytest.raises(TrainError, match="n_feats: resume file 8, requested 16"):
        saved.resumed_with(TrainConfig(scale=2, n_feats=16), {"n_feats"})
    with pytest.raises(TrainError, match="learning_rate"):
        saved.resumed_with(TrainConfig(scale=2, learning_rate=1e-3), {"learning_rate"})
