"""Whole-archive conversions: rewrite every scene in another format, or degrade every scene to LR."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dualsr_deploy.data.archive import Archive, ArchiveEntry
from dualsr_deploy.data.degrade import Blur, degrade, modcrop
from dualsr_deploy.data.formats import write_scene, writing
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.errors import DualSRError

SceneTransform = Callable[[Scene], Scene]
# A whole conversion holds the scene ~4 times in float32 (read, normalised, back in the source's units as float64);
# measured with `dualsr data convert` on an EMIT-like granule, 4.8x its float32 size (benchmarks/results/granule.md)
CONVERT_COPIES = 5


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
    memory_budget: int | None = None,
) -> list[BatchResult]:
    """Write each scene of ``archive`` to ``out_dir/<name><suffix>``; a failing scene is reported, not fatal.

    Existing outputs are skipped (reported as errors) unless ``overwrite``; names keep the archive's folders. A
    scene whose conversion would hold more than ``memory_budget`` bytes (default: a quarter of the memory this
    process may use) is converted in row strips (:data:`CONVERT_COPIES` copies of the scene in float32 is what a
    whole conversion holds), into the same file; with a ``transform`` (``data degrade``) scenes are held whole.
    """
    writing(Path(f"scene{suffix}"))  # an unknown suffix is refused before any scene is read
    from dualsr_deploy.resources import usable_memory

    budget = memory_budget or usable_memory() // 4
    out = Path(out_dir)
    results = []
    for index, entry in enumerate(archive.entries):
        target = out / f"{entry.name}{suffix}"
        try:
            if entry.error is not None or entry.shape is None:
                result = BatchResult(entry.name, error=entry.error or "unreadable")
            elif target.exists() and not overwrite:
                result = BatchResult(entry.name, error=f"{target}: exists already (pass --force to overwrite)")
            elif transform is None and CONVERT_COPIES * 4 * math.prod(entry.shape) > budget:
                result = BatchResult(entry.name, _convert_in_strips(archive, entry, target, units, normalise, budget))
            else:
                with archive.open(entry) as reader:
                    loaded = reader.load(normalise)
                # no-data pixels and bad bands' raw values go through, as in a streamed conversion
                scene = Scene(entry.name, loaded.cube, loaded.meta, valid=loaded.valid, passthrough=loaded.passthrough)
                scene = transform(scene) if transform is not None else scene
                result = BatchResult(entry.name, write_scene(target, scene, units=units))
        except (DualSRError, OSError) as exc:
            result = BatchResult(entry.name, error=str(exc))
        results.append(result)
        if progress is not None:
            progress(result, index + 1, len(archive))
    return results


def _convert_in_strips(
    archive: Archive, entry: ArchiveEntry, target: Path, units: str, normalise: Normalisation | None, budget: int
) -> Path:
    """One scene read and written a strip of rows at a time (each strip within the budget): the file
    :func:`write_scene` would write, with the whole scene's notes."""
    from dualsr_deploy.data.formats import declared_factor, open_strips
    from dualsr_deploy.data.formats.reader import whole_notes
    from dualsr_deploy.data.scene import Window

    assert entry.shape is not None
    c, h, w = entry.shape
    rule = normalise or Normalisation()
    rows = max(1, min(h, budget // (CONVERT_COPIES * 4 * c * w)))
    if rows < h:  # a power of two: strips start and end on a compressed output's chunks (chunk_writes.chunk_rows)
        rows = 1 << (rows.bit_length() - 1)
    with archive.open(entry) as reader:
        reader.resolve_in_strips(rule)
        notes = [reader.load(rule, Window(top, 0, min(rows, h - top), w)).meta.notes for top in range(0, h, rows)]
        meta = reader.load(rule, Window(0, 0, 1, w)).meta
        meta = meta.replace(notes=whole_notes(notes))
        dtype = meta.dtype if units == "source" else "float32"
        factor = declared_factor(meta, units)
        with open_strips(target, (c, h, w), meta, {}, dtype=dtype, units=units, factor=factor, rows=rows) as writer:
            for top in range(0, h, rows):
                part = reader.load(rule, Window(top, 0, min(rows, h - top), w))
                part = Scene(entry.name, part.cube, meta, valid=part.valid, passthrough=part.passthrough)
                writer.write(top, part.raw() if units == "source" else part.normalised())
            return writer.commit()


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
