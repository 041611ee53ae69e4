"""Growing a trained CoarSR into a wider and deeper one that computes the same (``dualsr train --init SMALL``)."""

from __future__ import annotations

import pytest
import torch

from dualsr_deploy.archs.coarsr import CoarSR, CoarSRConfig, per_band_loop
from dualsr_deploy.errors import TrainError
from dualsr_deploy.train.grow import grow


def _trained_looking(config: CoarSRConfig) -> CoarSR:
    """A model whose BatchNorm statistics and γ weights are not the defaults, as a trained one's are not."""
    torch.manual_seed(1)
    model = CoarSR(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_mean is not None
            assert module.running_var is not None
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.1, 0.1)
    with torch.no_grad():
        model.gamma_rnn.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_grown_model_computes_what_the_small_one_did(scale: int, mode: str) -> None:
    small = _trained_looking(CoarSRConfig(scale, n_feats=4, n_blocks=1))
    big = grow(small, CoarSRConfig(scale, n_feats=7, n_blocks=2))
    lr = torch.rand(2, 9, 6, 6, generator=torch.Generator().manual_seed(0))
    getattr(small, mode)(), getattr(big, mode)()
    with torch.no_grad():
        torch.testing.assert_close(per_band_loop(big, lr, "paper"), per_band_loop(small, lr, "paper"))


def test_the_new_capacity_learns() -> None:
    small = _trained_looking(CoarSRConfig(2, n_feats=4, n_blocks=1))
    big = grow(small, CoarSRConfig(2, n_feats=6, n_blocks=2))
    lr = torch.rand(2, 6, 6, 6, generator=torch.Generator().manual_seed(0))
    loss = per_band_loop(big, lr, "paper").abs().mean()
    loss.backward()  # type: ignore[no-untyped-call]
    # the first upsampling conv reads the features; its old rows' columns for the new channels start at 0
    tail = big.get_parameter("tail.0.0.weight_v")
    assert torch.count_nonzero(tail[:16, 4:]) == 0
    assert torch.count_nonzero(tail[16:]) > 0  # new rows (new channels' outputs) start random
    assert tail.grad is not None
    assert tail.grad[:16, 4:].abs().sum() > 0
    new_block = big.get_parameter("GFM_intra_one.left_one_body.body.0.1.body.4.weight")  # an added ResBlock
    assert torch.count_nonzero(new_block) == 0
    assert new_block.grad is not None
    assert new_block.grad.abs().sum() > 0


def test_only_growth_of_the_same_scale() -> None:
    small = CoarSR(CoarSRConfig(4, n_feats=8, n_blocks=2))
    for config in (CoarSRConfig(4, 4, 2), CoarSRConfig(4, 8, 1), CoarSRConfig(2, 16, 2)):
        with pytest.raises(TrainError, match="cannot grow"):
            grow(small, config)
