"""What ``dualsr train`` trains on: a patch store as given, or one built in the run folder from HR scenes."""

from __future__ import annotations

import os
from pathlib import Path

from dualsr_deploy.data.archive import open_archive
from dualsr_deploy.data.patches import PatchRecipe, ProgressCallback, prepare_patches, read_store_info
from dualsr_deploy.errors import DataError, TrainError

STORE_NAME = "patches.h5"


def is_patch_store(path: Path) -> bool:
    """True for an HDF5 file that carries a ``dualsr_patch_store`` description."""
    if not path.is_file():
        return False
    import h5py

    if not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as handle:
            return "dualsr_patch_store" in handle.attrs
    except OSError:
        return False


def resolve_store(
    source: str | Path,
    run_dir: str | Path,
    recipe: PatchRecipe | None,
    *,
    progress: ProgressCallback | None = None,
) -> Path:
    """The patch store to train on.

    ``source`` is a patch store (returned as is) or anything :func:`open_archive` takes (a folder, glob, list
    file, HDF5 of scenes); then ``recipe`` is required and the store is built as ``run_dir/patches.h5``, or reused
    when an earlier attempt already built one for the same scale.
    """
    path = Path(source)
    if is_patch_store(path):
        return path
    if not path.exists() and not any(c in str(source) for c in "*?["):
        raise TrainError(f"{source}: no such patch store, scene file or folder")
    if recipe is None:
        raise TrainError(
            f"{source}: not a patch store (build one with `dualsr data prepare`); to train directly on scenes, "
            "give --scale"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainError(
            f"{source}: under torchrun, train on a patch store (build it once with `dualsr data prepare`) so the "
            "processes do not all build one"
        )
    store = Path(run_dir) / STORE_NAME
    if store.exists():
        info = read_store_info(store)
        if info.scale != recipe.scale or info.lr_patch != recipe.lr_patch:
            raise TrainError(
                f"{store} was built for ×{info.scale} with {info.lr_patch}-pixel LR patches, this run asks for "
                f"×{recipe.scale} with {recipe.lr_patch}; remove it or choose another --out"
            )
        return store
    try:
        archive = open_archive(str(source))
    except DataError as exc:
        raise TrainError(f"cannot train on {source}: {exc}") from None
    prepare_patches(archive, store, recipe, progress=progress)
    return store
