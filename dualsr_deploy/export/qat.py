"""Quantisation-aware fine-tuning for the INT8 graph (``dualsr export --int8 --qat-steps N``, issue #45).

Post-training INT8 of the shipped weights fails the quality rule on a dark held-out scene (``docs/results/int8.md``).
This fine-tunes a copy of the folded model through the very rounding its INT8 graph will do: each quantised
convolution's input fake-quantised to uint8 with the calibrated range (fixed), its weights to int8 per output channel
with the scale :func:`~dualsr_deploy.export.int8.add_qdq` will take from them; gradients pass the rounding straight
through. The target is the fp32 model's own output on the calibration store's training patches (no HR needed): an
L1 distance plus the mean spectral angle between the two SR results (the bicubic skip added), as the rule's SAM is
where INT8 failed, on dark spectra whose absolute errors are small. The fine-tuned copy's INT8 graph is then checked
against the rule like any other, against the **original** weights' fp32 results.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from dualsr_deploy.archs.cube import FoldedCoarSR
from dualsr_deploy.errors import InputError

# the spectral-angle term's weight beside the L1 (radians against the residual's units): on the airborne ×2 weights
# the L1 is ~6e-4 and the angle ~0.025 rad, and with a weight of 1 the angle ruled: SAM fell, PSNR fell further
SAM_WEIGHT = 0.05
TRAIN_PATCHES = 4096  # read at most this many training patches (a store's size is its maker's claim)


class _Int8Weight(nn.Module):
    """A weight as the INT8 graph holds it: symmetric int8 per output channel (straight-through gradient)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        peak = w.detach().abs().flatten(1).amax(dim=1)
        scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak)).float()
        zero = torch.zeros(w.shape[0], dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


@contextmanager
def int8_rounding(core: FoldedCoarSR, ranges: dict[str, tuple[float, float]]) -> Iterator[FoldedCoarSR]:
    """``core`` computing as its INT8 graph for ``ranges`` would (inputs and weights of those convolutions
    rounded), for the duration of the block; its float weights are what remains afterwards."""
    from dualsr_deploy.export.int8 import _u8

    modules = dict(core.named_modules())
    hooks = []
    for name, (low, high) in ranges.items():
        conv = modules[name]
        scale, zero = _u8(low, high)
        hooks.append(
            conv.register_forward_pre_hook(
                lambda _m, args, s=scale, z=zero: (torch.fake_quantize_per_tensor_affine(args[0], s, z, 0, 255),)
            )
        )
        parametrize.register_parametrization(conv, "weight", _Int8Weight())
    try:
        yield core
    finally:
        for handle in hooks:
            handle.remove()
        for name in ranges:
            parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=False)


def fine_tune(
    core: FoldedCoarSR,
    ranges: dict[str, tuple[float, float]],
    store: Path,
    steps: int,
    *,
    batch: int = 16,
    learning_rate: float = 2e-5,
    sam_weight: float = SAM_WEIGHT,
    seed: int = 0,
    say: Callable[[str], None] = lambda _line: None,
    every: int = 0,
    check: Callable[[int, FoldedCoarSR], None] | None = None,
) -> FoldedCoarSR:
    """A copy of ``core`` fine-tuned for ``steps`` batches of ``store``'s training LR patches to match ``core``'s
    output through the INT8 rounding of ``ranges``. ``check(step, model)`` is called every ``every`` steps, the
    model in eval mode and still rounding (``benchmarks/int8_qat.py`` scores it there)."""
    import h5py

    with h5py.File(store, "r") as handle:  # the first kernel's patches (N, bands, h, w), at most TRAIN_PATCHES
        patches = handle["train/lr"]
        take = np.sort(
            np.random.default_rng(seed).choice(patches.shape[1], min(patches.shape[1], TRAIN_PATCHES), replace=False)
        )
        lr = np.asarray(patches[0, take], dtype=np.float32)
    if not np.isfinite(lr).all():  # a NaN patch would turn every weight NaN
        raise InputError(f"{store}: its training patches hold non-finite values (nothing to fine-tune on)")
    teacher = core.eval()
    student = copy.deepcopy(core).train()
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with int8_rounding(student, ranges):
        optimiser = torch.optim.Adam(student.parameters(), lr=learning_rate)
        for step in range(1, steps + 1):
            x = torch.from_numpy(lr[rng.choice(len(lr), min(batch, len(lr)), replace=False)])
            with torch.no_grad():
                target = teacher(x)
                skip = nn.functional.interpolate(x, scale_factor=core.scale, mode="bicubic", align_corners=False)
            got = student(x)
            loss = nn.functional.l1_loss(got, target)
            if sam_weight:
                a, b = got + skip, target + skip
                cosine = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-12)
                loss = loss + sam_weight * torch.acos(cosine.clamp(-1 + 1e-7, 1 - 1e-7)).mean()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            if step % 25 == 0 or step == steps:
                say(f"fine-tuning for INT8: step {step}/{steps}, loss {float(loss.detach()):.5f}, "
                    f"{time.perf_counter() - start:.0f} s")  # fmt: skip
            if check is not None and every and step % every == 0:
                student.eval()
                with torch.no_grad():
                    check(step, student)
                student.train()
    student.eval().requires_grad_(False)
    return student


__all__ = ["fine_tune", "int8_rounding"]
