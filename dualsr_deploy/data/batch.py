"""Whole-archive conversions: rewrite every scene in another format, or degrade every scene to LR."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dualsr_deploy.data.archive import Archive
from dualsr_deploy.data.degrade import Blur, degrade, modcrop
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.data.writers import WRITE_SUFFIXES, write_scene
from dualsr_deploy.errors import DataError, DualSRError

SceneTransform = Callable[[Scene], Scene]


@dataclass(frozen=True)
class BatchResult:
    name: str
    output: Path | None = None
    error: str | None = None


def convert_archive(
    archive: Archive,
    out_dir: str | os.PathLike[str],
    *,
    suffix: str = ".h5",
    units: str = "normalised",
    normalise: Normalisation | None = None,
    transform: SceneTransform | None = None,
    overwrite: bool = False,
    progress: Callable[[BatchResult, int, int], None] | None = None,
) -> list[BatchResult]:
    """Write each scene of ``archive`` to ``out_dir/<name><suffix>``; a failing scene is reported, not fatal.

    Existing outputs are skipped (reported as errors) unless ``overwrite``; names keep the archive's folders.
    """
    if suffix not in WRITE_SUFFIXES:
        raise DataError(f"cannot write {suffix!r}; choose one of {', '.join(WRITE_SUFFIXES)}")
    out = Path(out_dir)
    results = []
    for index, item in enumerate(archive.scenes(normalise)):
        target = out / f"{item.entry.name}{suffix}"
        if item.scene is None:
            result = BatchResult(item.entry.name, error=item.error)
        elif target.exists() and not overwrite:
            result = BatchResult(item.entry.name, error=f"{target}: exists already (pass --force to overwrite)")
        else:
            try:
                scene = transform(item.scene) if transform is not None else item.scene
                result = BatchResult(item.entry.name, write_scene(target, scene, units=units))
            except DualSRError as exc:
                result = BatchResult(item.entry.name, error=str(exc))
        results.append(result)
        if progress is not None:
            progress(result, index + 1, len(archive))
    return results


def degradation(scale: int, *, blur: Blur | None = None, noise_sigma: float = 0.0, seed: int = 0) -> SceneTransform:
    """A transform that crops a scene to a multiple of ``scale`` and degrades it (see :func:`degrade`)."""

    def apply(scene: Scene) -> Scene:
        hr = modcrop(torch.from_numpy(scene.cube).double(), scale)
        lr = degrade(hr, scale, blur=blur, noise_sigma=noise_sigma, seed=seed).float().numpy()
        attrs = {**scene.meta.attrs, "degradation": f"x{scale} bicubic" + (f" blur {blur}" if blur else "")}
        if noise_sigma:
            attrs["degradation"] += f" noise {noise_sigma:g} seed {seed}"
        georef = None if scene.meta.georef is None else scene.meta.georef.scaled(1.0 / scale)
        meta = scene.meta.replace(attrs=attrs, georef=georef)
        return Scene(scene.name, lr, meta)

    return apply
