"""The published band-by-band schedule: for each batch, the bands in order, one optimiser step per band, the
recurrent state carried forward detached."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from dualsr_deploy.archs.coarsr import bicubic_upsample
from dualsr_deploy.archs.neighbours import NeighbourRule, band_neighbours


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast type for a precision option (``None``: plain fp32). ``auto`` is bf16 on CUDA, else fp32."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
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
