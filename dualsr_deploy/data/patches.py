"""Training patches: an HDF5 patch store built from HR scenes by the seed's recipe, and a dataset over it.

Recipe (per training scene): rescale the HR cube by each of ``rescales`` (1, 0.75, 0.5; MATLAB bicubic), cut HR
patches of ``lr_patch·scale`` pixels every ``stride`` pixels, and make each LR patch by MATLAB bicubic
degradation, once without blur and once through each extra Gaussian kernel. Augmentation (rotations by 90° and a
horizontal flip, 8 variants) is applied when a patch is read, not stored: for square patches whose side is a
multiple of the scale, degradation commutes with these operations exactly, so LR and HR stay paired.

Validation scenes (a scene-level split, recorded in the store) are stored whole, cropped to a multiple of the
scale, with their bicubic LR.

With a band window (``bands``), scenes of different band counts share one store: each training patch is cut into
consecutive windows of ``bands`` contiguous bands (the last one aligned to the scene's last band), scenes with
fewer bands are skipped, and validation scenes keep all their bands. CoarSR is applied band by band with its
neighbours, so a model trained on windows runs on any band count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.data.archive import Archive
from dualsr_deploy.data.degrade import Blur, degrade, modcrop
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.errors import DataError, DualSRError
from dualsr_deploy.ops.imresize import imresize

STORE_VERSION = 1
AUGMENTATIONS = 8  # 4 rotations × (no flip, horizontal flip)


@dataclass(frozen=True)
class PatchRecipe:
    scale: int
    lr_patch: int = 32
    stride: int | None = None  # in HR pixels of the rescaled image; default: the HR patch size (no overlap)
    rescales: tuple[float, ...] = (1.0, 0.75, 0.5)
    blurs: tuple[Blur, ...] = ()  # extra kernels; the plain bicubic LR is always kernel 0
    validation: tuple[str, ...] = ()  # scene names to hold out; default: ``validation_count`` chosen by ``seed``
    validation_count: int = 2
    seed: int = 0
    bands: int | None = None  # band window: training patches are cut into windows of this many contiguous bands

    @property
    def hr_patch(self) -> int:
        return self.lr_patch * self.scale

    @property
    def hr_stride(self) -> int:
        return self.stride or self.hr_patch

    def check(self) -> None:
        if self.scale < 2 or self.lr_patch < 4 or self.hr_stride < 1:
            raise DataError(f"patch recipe needs scale ≥ 2, lr_patch ≥ 4 and a positive stride: {self}")
        if not self.rescales or any(not 0 < r <= 1 for r in self.rescales):
            raise DataError(f"rescales must lie in (0, 1]: {self.rescales}")
        if self.bands is not None and self.bands < 5:
            raise DataError(f"a band window needs at least 5 bands (CoarSR's neighbours); got {self.bands}")


@dataclass(frozen=True)
class PatchStoreInfo:
    """What a patch store holds (its ``dualsr_patch_store`` attribute)."""

    version: int
    scale: int
    lr_patch: int
    stride: int
    rescales: tuple[float, ...]
    kernels: tuple[str, ...]  # "none" then "SIZE:SIGMA" per blur
    bands: int
    train_scenes: tuple[str, ...]
    validation_scenes: tuple[str, ...]
    patches: int
    source: str
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def samples(self) -> int:
        """Training samples with augmentation: patches × kernels × 8."""
        return self.patches * len(self.kernels) * AUGMENTATIONS

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PatchStoreInfo:
        data = json.loads(text)
        for name in ("rescales", "kernels", "train_scenes", "validation_scenes"):
            data[name] = tuple(data[name])
        return cls(**data)


ProgressCallback = Callable[[str, int, int], None]


def split_scenes(names: list[str], recipe: PatchRecipe) -> tuple[list[str], list[str]]:
    """(train, validation) scene names: the recipe's named scenes, or ``validation_count`` chosen by seed."""
    if recipe.validation:
        missing = [name for name in recipe.validation if name not in names]
        if missing:
            raise DataError(f"validation scenes {missing} are not in the archive (it has {', '.join(names)})")
        validation = list(recipe.validation)
    else:
        if len(names) <= recipe.validation_count:
            raise DataError(
                f"{len(names)} readable scenes cannot be split into training and {recipe.validation_count} "
                "validation scenes; add scenes or lower --validation-count"
            )
        rng = np.random.default_rng(recipe.seed)
        validation = sorted(rng.choice(sorted(names), recipe.validation_count, replace=False).tolist())
    train = [name for name in names if name not in validation]
    if not train:
        raise DataError("no training scenes left after the validation split")
    return train, validation


def cut_patches(hr: torch.Tensor, recipe: PatchRecipe) -> torch.Tensor:
    """HR patches ``(N, C, P·s, P·s)`` of one scene over all rescales (float64)."""
    patches = []
    size, stride = recipe.hr_patch, recipe.hr_stride
    for factor in recipe.rescales:
        image = hr if factor == 1.0 else imresize(hr, factor).clamp_(0.0, 1.0)
        height, width = image.shape[-2:]
        for top in range(0, height - size + 1, stride):
            for left in range(0, width - size + 1, stride):
                patches.append(image[:, top : top + size, left : left + size])
    if not patches:
        return hr.new_zeros((0, hr.shape[0], size, size))
    return torch.stack(patches)


def band_windows(bands: int, window: int) -> list[int]:
    """First bands of consecutive ``window``-band windows covering ``0..bands-1`` (the last one ends at the end)."""
    starts = list(range(0, bands - window + 1, window))
    if starts and starts[-1] + window < bands:
        starts.append(bands - window)
    return starts


def prepare_patches(
    archive: Archive,
    out: str | Path,
    recipe: PatchRecipe,
    *,
    normalise: Normalisation | None = None,
    progress: ProgressCallback | None = None,
) -> PatchStoreInfo:
    """Build the patch store ``out`` (HDF5, written atomically) from the HR scenes of ``archive``."""
    import h5py

    recipe.check()
    start = time.perf_counter()
    skipped = {entry.name: entry.error or "" for entry in archive.failed}
    entries = {entry.name: entry for entry in archive.readable}
    train, validation = split_scenes(list(entries), recipe)
    kernels: list[Blur | None] = [None, *recipe.blurs]
    bands: int | None = None
    total = len(train) + len(validation)
    done = 0
    kept_train: list[str] = []
    kept_validation: list[str] = []
    with atomic_output(out) as tmp, h5py.File(tmp, "w") as store:
        hr_set = lr_set = scene_set = None
        for name in train + validation:
            if progress is not None:
                progress(name, done, total)
            done += 1
            try:
                with archive.open(entries[name]) as reader:
                    scene = reader.load(normalise)
            except DualSRError as exc:  # one unreadable scene is reported, the store is built from the rest
                skipped[name] = str(exc)
                continue
            if recipe.bands is not None:
                bands = recipe.bands
                if scene.shape[0] < bands:
                    skipped[name] = f"{scene.shape[0]} bands, fewer than the {bands}-band window"
                    continue
            else:
                if bands is None:
                    bands = scene.shape[0]
                if scene.shape[0] != bands:
                    skipped[name] = f"{scene.shape[0]} bands, the store's first scene has {bands}"
                    continue
            hr = torch.from_numpy(scene.cube).double()
            if name in validation:
                cropped = modcrop(hr, recipe.scale)
                group = store.create_group(f"validation/{name}")
                group.create_dataset("hr", data=cropped.float().numpy(), compression="lzf")
                group.create_dataset("lr", data=degrade(cropped, recipe.scale).float().numpy(), compression="lzf")
                kept_validation.append(name)
                continue
            patches = cut_patches(hr, recipe)
            if len(patches) == 0:
                skipped[name] = f"{scene.shape[1]}×{scene.shape[2]} is smaller than one {recipe.hr_patch}-pixel patch"
                continue
            if recipe.bands is not None:
                window = recipe.bands
                starts = band_windows(scene.shape[0], window)
                patches = torch.cat([patches[:, first : first + window] for first in starts])
            lr = np.stack([degrade(patches, recipe.scale, blur=k).float().numpy() for k in kernels])
            if hr_set is None or lr_set is None or scene_set is None:
                hr_set = store.create_dataset(
                    "train/hr",
                    shape=(0, *patches.shape[1:]),
                    maxshape=(None, *patches.shape[1:]),
                    dtype="f4",
                    chunks=(1, *patches.shape[1:]),
                    compression="lzf",
                )
                lr_set = store.create_dataset(
                    "train/lr",
                    shape=(len(kernels), 0, *lr.shape[2:]),
                    maxshape=(len(kernels), None, *lr.shape[2:]),
                    dtype="f4",
                    chunks=(1, 1, *lr.shape[2:]),
                    compression="lzf",
                )
                scene_set = store.create_dataset("train/scene", shape=(0,), maxshape=(None,), dtype="i4")
            first = hr_set.shape[0]
            count = len(patches)
            hr_set.resize(first + count, axis=0)
            lr_set.resize(first + count, axis=1)
            scene_set.resize(first + count, axis=0)
            hr_set[first:] = patches.float().numpy()
            lr_set[:, first:] = lr
            scene_set[first:] = len(kept_train)
            kept_train.append(name)
        if not kept_train or not kept_validation:
            raise DataError(f"no usable {'training' if not kept_train else 'validation'} scene; skipped: {skipped}")
        info = PatchStoreInfo(
            version=STORE_VERSION,
            scale=recipe.scale,
            lr_patch=recipe.lr_patch,
            stride=recipe.hr_stride,
            rescales=recipe.rescales,
            kernels=tuple("none" if k is None else str(k) for k in kernels),
            bands=int(bands or 0),
            train_scenes=tuple(kept_train),
            validation_scenes=tuple(kept_validation),
            patches=int(hr_set.shape[0]) if hr_set is not None else 0,
            source=str(archive.root),
            skipped=skipped,
            seconds=round(time.perf_counter() - start, 2),
        )
        store.attrs["dualsr_patch_store"] = info.to_json()
    if progress is not None:
        progress("", total, total)
    return info


def read_store_info(path: str | Path) -> PatchStoreInfo:
    """The store's description; a :class:`DataError` for a missing, empty or corrupt store."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such patch store; build one with `dualsr data prepare`")
    try:
        with h5py.File(path, "r") as store:
            text = store.attrs.get("dualsr_patch_store")
            if text is None:
                raise DataError(
                    f"{path}: not a patch store (no dualsr_patch_store attribute); build one with `dualsr data prepare`"
                )
            info = PatchStoreInfo.from_json(text)
            if "train/hr" not in store or store["train/hr"].shape[0] == 0:
                raise DataError(f"{path}: the patch store holds no training patches")
            if store["train/hr"].shape[0] != info.patches:
                raise DataError(f"{path}: {store['train/hr'].shape[0]} patches, the header says {info.patches}")
    except OSError as exc:
        raise DataError(f"{path}: cannot open the patch store ({exc})") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise DataError(f"{path}: corrupt patch store ({exc})") from None
    return info


def augment(x: np.ndarray, variant: int) -> np.ndarray:
    """Variant 0..7 of ``(C, H, W)``: ``variant % 4`` quarter turns, then a horizontal flip if ``variant ≥ 4``."""
    out = np.rot90(x, variant % 4, axes=(1, 2))
    if variant >= 4:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


class PatchDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Training pairs ``(lr (C, P, P), hr (C, P·s, P·s))`` float32 from a patch store, augmented on read.

    Index ``i`` maps to (kernel, patch, variant); the HDF5 file is opened lazily in each worker process.
    """

    def __init__(self, path: str | Path, *, augmentation: bool = True) -> None:
        self.path = Path(path)
        self.info = read_store_info(self.path)
        self.variants = AUGMENTATIONS if augmentation else 1
        self._handle: Any = None

    def __len__(self) -> int:
        return self.info.patches * len(self.info.kernels) * self.variants

    def _file(self) -> Any:
        if self._handle is None:
            import h5py

            self._handle = h5py.File(self.path, "r")
        return self._handle

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rest, variant = divmod(index, self.variants)
        kernel, patch = divmod(rest, self.info.patches)
        handle = self._file()
        lr = augment(handle["train/lr"][kernel, patch], variant)
        hr = augment(handle["train/hr"][patch], variant)
        return torch.from_numpy(lr), torch.from_numpy(hr)

    def validation(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        """``(name, lr (C, h, w), hr (C, s·h, s·w))`` for each held-out scene."""
        handle = self._file()
        for name in self.info.validation_scenes:
            group = handle[f"validation/{name}"]
            yield name, torch.from_numpy(group["lr"][()]), torch.from_numpy(group["hr"][()])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"] = None  # h5py handles do not cross process boundaries
        return state
