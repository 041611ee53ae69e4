"""Running a band-chunk graph (:mod:`dualsr_deploy.export.onnx`) over whole cubes: the runtime gathers each chunk's
neighbour planes, calls the graph, and carries the scan's state to the next chunk, as the torch backend does in
:meth:`~dualsr_deploy.archs.cube.FoldedCoarSR.chunk`. The last chunk is padded with copies of its last band's planes
(the scan runs forward, so padding after the last band changes nothing before it) and its padding dropped."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from dualsr_deploy.archs.neighbours import check_rule, neighbour_table
from dualsr_deploy.errors import ExportError

# (planes (B, n, 5, h, w), state (B, F, h, w), first (1,)) → (residual (B, n, s·h, s·w), state (B, F, h, w))
ChunkCall = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def check_graph_shapes(
    path: object, planes: Sequence[object], state: Sequence[object], chunk: int, channels: int
) -> None:
    """Refuse a band-chunk graph whose inputs are not what its manifest says (``chunk`` bands of 5 planes, a state
    of ``channels`` maps): the manifest is a claim, and the runtime pads and slices by it."""
    wanted = (chunk, 5, channels)
    found = (
        planes[1] if len(planes) == 5 else None,
        planes[2] if len(planes) == 5 else None,
        state[1] if len(state) == 4 else None,
    )
    if found != wanted:
        raise ExportError(
            f"{path}: its inputs take {found[0]} bands of {found[1]} planes and a state of {found[2]} maps, but its "
            f"manifest says {chunk} bands and {channels} maps; re-export it (dualsr export --band-chunk)"
        )


def run_in_chunks(
    lr: torch.Tensor, *, rule: str, scale: int, chunk: int, state_channels: int, call: ChunkCall
) -> torch.Tensor:
    """The residual ``(B, C, s·h, s·w)`` float32 of ``lr (B, C, h, w)``, ``chunk`` bands a call."""
    batch, bands, h, w = lr.shape
    index = neighbour_table(bands, check_rule(rule), torch.device("cpu")).reshape(bands, 5)
    source = np.ascontiguousarray(lr.detach().cpu().numpy(), dtype=np.float32)
    out = np.empty((batch, bands, scale * h, scale * w), dtype=np.float32)
    state = np.zeros((batch, state_channels, h, w), dtype=np.float32)
    for start in range(0, bands, chunk):
        rows = index[start : start + chunk]
        n = rows.shape[0]
        if n < chunk:
            rows = torch.cat([rows, rows[-1:].expand(chunk - n, 5)])
        planes = np.ascontiguousarray(source[:, rows.numpy()])  # (B, chunk, 5, h, w)
        first = np.array([1.0 if start == 0 else 0.0], dtype=np.float32)
        residual, state = call(planes, state, first)
        out[:, start : start + n] = residual[:, :n]
    return torch.from_numpy(out)


__all__ = ["ChunkCall", "check_graph_shapes", "run_in_chunks"]
