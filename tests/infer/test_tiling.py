"""Tiled coarse SR equals whole-image SR, for every backend available here, and the fine stage in strips equals
the whole-image fine stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dualsr_deploy.archs.coarsr import CoarSRConfig
from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.backends.base import Backend
from dualsr_deploy.backends.onnx_backend import OnnxBackend
from dualsr_deploy.backends.torch_backend import TorchBackend
from dualsr_deploy.checkpoint import read_checkpoint
from dualsr_deploy.data.synth import synthesize
from dualsr_deploy.export.onnx import torch2onnx
from dualsr_deploy.infer.tiling import TileGrid, paste, receptive_radius
from dualsr_deploy.ops.backproject import backproject
from dualsr_deploy.ops.fine import backproject_streamed, sam_weight_streamed
from dualsr_deploy.ops.imresize import imresize
from dualsr_deploy.weights import shipped_weights


@pytest.mark.parametrize(("tile_width", "count"), [(None, 12), (24, 8), (10, 16)])
def test_cores_partition_the_scene_and_windows_share_one_size(tile_width: int | None, count: int) -> None:
    grid = TileGrid(50, 37, tile=16, halo=8, tile_width=tile_width)  # square cores, or wider / narrower ones
    covered = torch.zeros(50, 37, dtype=torch.int32)
    for tile in grid:
        assert tile.top <= tile.core_top
        assert tile.core_top + tile.core_height <= tile.top + grid.window_h <= 50
        assert tile.left + grid.window_w <= 37
        # the core keeps `halo` pixels of context on each side, unless the window stops at the scene's border
        assert tile.core_top - tile.top >= 8 or tile.top == 0
        assert tile.left + grid.window_w - (tile.core_left + tile.core_width) >= 8 or tile.left + grid.window_w == 37
        rows = slice(tile.core_top, tile.core_top + tile.core_height)
        covered[rows, tile.core_left : tile.core_left + tile.core_width] += 1
    assert bool((covered == 1).all())
    assert len(grid) == len(list(grid)) == count
    assert sum(len(row) for row in grid.rows()) == count


def test_receptive_radius_matches_the_design_note() -> None:
    assert receptive_radius(CoarSRConfig(4, 64, 2)) == 24  # DESIGN.md: "about 24 LR pixels"
    assert receptive_radius(CoarSRConfig(4, 16, 1)) == 16


def _tiled(backend: Backend, lr: torch.Tensor, tile: int, halo: int) -> torch.Tensor:
    c, h, w = lr.shape
    s = backend.capabilities.scale
    grid = TileGrid(h, w, tile, halo)
    out = torch.empty(c, s * h, s * w)
    tiles = list(grid)
    for start in range(0, len(tiles), 3):  # batches of 3 windows
        chunk = tiles[start : start + 3]
        windows = torch.stack([lr[:, t.top : t.top + grid.window_h, t.left : t.left + grid.window_w] for t in chunk])
        for t, sr in zip(chunk, backend.run(windows), strict=True):
            paste(out, t, sr, s)
    return out


@pytest.mark.parametrize("kind", ["torch", "onnx"])
def test_tiles_much_smaller_than_the_scene_give_the_whole_image_result(kind: str, tmp_path: Path) -> None:
    # The shipped ×4 weights on a real-looking LR scene (measured reflectances): values in [0, 1] as in use.
    model, info = read_checkpoint(shipped_weights(4))
    core = fold_coarsr(model, info.neighbour_rule)
    hr = torch.from_numpy(synthesize(2, size=256, bands=31).cube).double()
    lr = imresize(hr, 0.25).float().clamp(0, 1)[:, :61, :47]
    backend: Backend = (
        TorchBackend(core) if kind == "torch" else OnnxBackend(torch2onnx(core, tmp_path / "m.onnx", bands=31))
    )
    with backend:
        whole = backend.run(lr[None])[0]
        tiled = _tiled(backend, lr, tile=12, halo=receptive_radius(model.config))
        assert (tiled - whole).abs().max().item() <= 1e-5
        # a halo too small for the receptive field is visibly wrong: the check above can fail
        too_small = _tiled(backend, lr, tile=12, halo=4)
        assert (too_small - whole).abs().max().item() > 1e-3


@pytest.mark.parametrize(("factor", "shape"), [(2, (6, 96, 70)), (3, (5, 99, 36)), (4, (5, 128, 44))])
def test_fine_stage_in_strips_equals_the_whole_image(factor: int, shape: tuple[int, int, int]) -> None:
    c, h, w = shape
    generator = torch.Generator().manual_seed(factor)
    base = 0.3 + 0.5 * torch.rand(c, 1, 1, generator=generator)
    im_h = (base + 0.02 * torch.rand(c, h, w, generator=generator)).clamp(0, 1)
    guide = imresize(im_h.double(), size=(h // factor, w // factor)).float()
    im_l = (guide + 0.01 * torch.rand(guide.shape, generator=generator)).clamp(0, 1)
    whole = backproject(im_h, im_l, factor=factor)

    def high(a: int, b: int) -> torch.Tensor:
        return im_h[:, a:b]

    def low(a: int, b: int) -> torch.Tensor:
        return im_l[:, a:b]

    weight = sam_weight_streamed(high, low, tuple(im_l.shape), factor, step=5)  # type: ignore[arg-type]
    assert 0.05 < weight < 1.0  # a real weight, not the clamp
    out = torch.full_like(im_h, float("nan"))
    for first, rows in backproject_streamed(high, low, tuple(im_l.shape), factor, weight, step=5):  # type: ignore[arg-type]
        out[:, first : first + rows.shape[1]] = rows
    assert (out - whole).abs().max().item() <= 1e-6
    assert (whole - im_h).abs().max().item() > 1e-3  # the fine stage changed something
