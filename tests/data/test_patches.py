"""Patch stores: the recipe's patch counts, a scene-level split, exact pairing under augmentation, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from dualsr_deploy.data import open_archive, write_scene
from dualsr_deploy.data.degrade import Blur, degrade
from dualsr_deploy.data.patches import PatchDataset, PatchRecipe, augment, prepare_patches, read_store_info
from dualsr_deploy.data.synth import synthesize
from dualsr_deploy.errors import DataError


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hr")
    for seed in range(4):
        write_scene(root / f"s{seed}.h5", synthesize(seed, size=64, bands=8))
    return root


@pytest.fixture(scope="module")
def store(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "patches.h5"
    recipe = PatchRecipe(scale=2, lr_patch=8, blurs=(Blur(5, 1.0),), validation=("s3",))
    prepare_patches(open_archive(scenes), path, recipe)
    return path


def test_store_contents(store: Path) -> None:
    info = read_store_info(store)
    # 64 px scenes, 16 px HR patches, stride 16: rescales 1, 0.75, 0.5 give 16 + 9 + 4 patches per scene.
    assert info.patches == 3 * (16 + 9 + 4)
    assert info.kernels == ("none", "5:1")
    assert info.train_scenes == ("s0", "s1", "s2")
    assert info.validation_scenes == ("s3",)
    assert info.samples == info.patches * 2 * 8
    dataset = PatchDataset(store)
    assert len(dataset) == info.samples
    lr, hr = dataset[0]
    assert lr.shape == (8, 8, 8)
    assert hr.shape == (8, 16, 16)
    name, val_lr, val_hr = next(dataset.validation())
    assert name == "s3"
    assert val_hr.shape == (8, 64, 64)
    assert val_lr.shape == (8, 32, 32)


def test_pairs_stay_exact_under_augmentation(store: Path) -> None:
    """Every variant's LR is the degradation of its HR: rotations and flips commute with the resize."""
    dataset = PatchDataset(store)
    per_kernel = dataset.info.patches * 8
    for index in [0, 5, 7, 8 * 17 + 3, per_kernel + 8 * 11 + 6]:
        lr, hr = dataset[index]
        blur = None if index < per_kernel else Blur(5, 1.0)
        torch.testing.assert_close(degrade(hr.double(), 2, blur=blur).float(), lr, rtol=0, atol=2e-7)


def test_augment_variants_are_distinct() -> None:
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    variants = {augment(x, v).tobytes() for v in range(8)}
    assert len(variants) == 8


def test_seeded_split(scenes: Path, tmp_path: Path) -> None:
    recipe = PatchRecipe(scale=2, lr_patch=8, rescales=(1.0,), validation_count=1, seed=5)
    a = prepare_patches(open_archive(scenes), tmp_path / "a.h5", recipe)
    b = prepare_patches(open_archive(scenes), tmp_path / "b.h5", recipe)
    assert a.validation_scenes == b.validation_scenes
    assert len(a.validation_scenes) == 1


def test_bad_stores(tmp_path: Path) -> None:
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(DataError, match=r"corrupt\.h5"):
        read_store_info(tmp_path / "corrupt.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as handle:
        handle["cube"] = np.zeros((3, 4, 4))
    with pytest.raises(DataError, match="not a patch store"):
        PatchDataset(tmp_path / "plain.h5")


def test_too_few_scenes(scenes: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot be split"):
        prepare_patches(open_archive(scenes / "s0.h5"), tmp_path / "x.h5", PatchRecipe(scale=2, lr_patch=8))
    assert not (tmp_path / "x.h5").exists()


def test_a_scene_that_fails_to_read_is_skipped(scenes: Path, tmp_path: Path) -> None:
    archive = open_archive(scenes)
    damaged = tmp_path / "s1.h5"
    damaged.write_bytes((scenes / "s1.h5").read_bytes()[:2000])  # probed fine, broken when read
    archive.entries[1] = dataclasses.replace(archive.entries[1], path=damaged)
    recipe = PatchRecipe(scale=2, lr_patch=8, rescales=(1.0,), validation=("s3",))
    info = prepare_patches(archive, tmp_path / "store.h5", recipe)
    assert info.train_scenes == ("s0", "s2")
    assert "s1.h5" in info.skipped["s1"]
