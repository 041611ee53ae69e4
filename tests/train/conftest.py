"""A tiny ×2 patch store made from synthetic scenes, shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from dualsr_deploy.data import open_archive, write_scene
from dualsr_deploy.data.patches import PatchRecipe, prepare_patches
from dualsr_deploy.data.synth import synthesize


@pytest.fixture(scope="session")
def hr_scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_hr")
    for seed in range(4):
        write_scene(root / f"s{seed}.h5", synthesize(seed, size=48, bands=6))
    return root


@pytest.fixture(scope="session")
def tiny_store(hr_scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """×2, 8-pixel LR patches: 3 training scenes × 13 patches × 8 augmentations; scene s3 held out."""
    path = tmp_path_factory.mktemp("train_store") / "patches.h5"
    prepare_patches(open_archive(hr_scenes), path, PatchRecipe(scale=2, lr_patch=8, validation=("s3",)))
    return path
