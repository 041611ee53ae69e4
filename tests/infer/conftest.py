"""A mixed archive of small LR scenes: several formats, band counts 5, 31 and 48, and one corrupt file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dualsr_deploy.data.scene import Scene
from dualsr_deploy.data.synth import synthesize
from dualsr_deploy.data.writers import write_scene
from dualsr_deploy.ops.imresize import imresize


def lr_scene(seed: int, size: int, bands: int, scale: int = 4) -> Scene:
    import torch

    hr = synthesize(seed, size=size * scale, bands=bands)
    lr = imresize(torch.from_numpy(hr.cube).double(), 1 / scale).clamp(0, 1).float().numpy()
    return Scene(hr.name, lr, hr.meta)


@pytest.fixture(scope="module")
def mixed_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    write_scene(folder / "a.h5", lr_scene(0, 24, 31))
    write_scene(folder / "b.npy", lr_scene(1, 24, 31))
    write_scene(folder / "sub" / "c.mat", lr_scene(2, 20, 5))
    write_scene(folder / "d.tif", lr_scene(3, 16, 48))
    write_scene(folder / "e.hdr", lr_scene(4, 16, 31))
    (folder / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # an HDF5 signature, then nothing
    return folder
