"""Training schedules.

``band`` (the paper's): for each batch, the bands in order, one optimiser step per band, the recurrent state carried
forward detached. ``parallel``: the band-parallel form of DESIGN.md — every band of the batch through the body at
once, the 1×1 recurrent merge scanned in band order, the tail on all bands at once — and one optimiser step on the
mean L1 over all bands (gradients flow through the whole recurrent scan). Same model, same loss; ``parallel`` makes
one update per batch instead of one per band, with far larger, faster kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from dualsr_deploy.archs.coarsr import CoarSR, bicubic_upsample
from dualsr_deploy.archs.neighbours import NeighbourRule, band_neighbours
from dualsr_deploy.runtimes import cpu_native_bf16

SCHEDULES = ("band", "parallel")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast type for a precision option (``None``: plain fp32). ``auto`` is bf16 on CUDA and on CPUs with
    native bf16 (:func:`~dualsr_deploy.runtimes.cpu_native_bf16`), else fp32."""
    if precision == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and cpu_native_bf16())
        return torch.bfloat16 if native else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def train_batch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr: torch.Tensor,
    hr: torch.Tensor,
    *,
    scale: int,
    rule: NeighbourRule,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """One batch, band by band. ``lr: (B, C, h, w)``, ``hr: (B, C, s·h, s·w)`` in [0, 1] on the model's device.

    ``model`` is a :class:`CoarSR` (or a DDP wrapper of one) in training mode. Returns the per-band L1 losses
    ``(C,)``, detached (kept on the device: no synchronisation per band).
    """
    bands = lr.shape[1]
    bicubic = bicubic_upsample(lr, scale)
    device_type = lr.device.type
    state: torch.Tensor | None = None
    losses = []
    for index in range(bands):
        (l0, l1), (r0, r1) = band_neighbours(index, bands, rule)
        with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
            sr, state = model(index, lr[:, index], bicubic[:, index], lr[:, [l0, l1]], lr[:, [r0, r1]], state)
        loss = F.l1_loss(sr.float(), hr[:, index])
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        state = state.detach()
        losses.append(loss.detach())
    return torch.stack(losses)


class BandParallel(nn.Module):
    """CoarSR over whole cubes in the band-parallel form: ``forward(lr, bicubic) → sr``, both ``(B, C, ·, ·)``.

    Computes what :func:`~dualsr_deploy.archs.coarsr.per_band_loop` computes (in eval mode, to float rounding) but
    with the body and tail run once on all ``B·C`` bands; a module of its own so DDP can wrap it.
    """

    def __init__(self, core: CoarSR, rule: NeighbourRule) -> None:
        super().__init__()
        self.core = core
        self.rule: NeighbourRule = rule

    def forward(self, lr: torch.Tensor, bicubic: torch.Tensor) -> torch.Tensor:
        batch, bands, height, width = lr.shape
        pairs = [band_neighbours(index, bands, self.rule) for index in range(bands)]
        left = torch.stack([lr[:, [p[0][0] for p in pairs]], lr[:, [p[0][1] for p in pairs]]], 2)
        right = torch.stack([lr[:, [p[1][0] for p in pairs]], lr[:, [p[1][1] for p in pairs]]], 2)
        flat = batch * bands
        out, skip = self.core.features(
            lr.reshape(flat, height, width),
            left.reshape(flat, 2, height, width),
            right.reshape(flat, 2, height, width),
        )
        out = out.view(batch, bands, *out.shape[1:])
        gamma = self.core.gamma_rnn
        state = out[:, 0]
        merged = [state]
        for index in range(1, bands):
            state = self.core.rnn_reduceD(torch.cat([gamma[0] * out[:, index], gamma[1] * state], 1))
            merged.append(state)
        body = torch.stack(merged, 1).reshape(flat, *out.shape[2:])
        sr = self.core.tail(body + skip)
        return sr.view(batch, bands, *sr.shape[-2:]) + bicubic


def train_batch_parallel(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr: torch.Tensor,
    hr: torch.Tensor,
    *,
    scale: int,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """One batch, all bands at once, one optimiser step. ``network`` is a :class:`BandParallel` (or a DDP wrapper
    of one). Returns the per-band L1 losses ``(C,)``, detached."""
    bicubic = bicubic_upsample(lr, scale)
    with torch.autocast(lr.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        sr = network(lr, bicubic)
    per_band = (sr.float() - hr).abs().mean(dim=(0, 2, 3))
    loss = per_band.mean()
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return per_band.detach()
