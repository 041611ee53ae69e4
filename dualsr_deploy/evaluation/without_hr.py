"""``dualsr eval --lr LR --sr SR`` with no HR: how faithful outputs are to their inputs, scene by scene, for real
scenes that have no ground truth (the EMIT, EnMAP, AVIRIS or PRISMA products users super-resolve).

For every LR scene of the archive and every SR folder given (paired by relative name, as ``dualsr eval`` pairs
them), and for the MATLAB-bicubic interpolation of the LR as the baseline:

- the consistency figures ``dualsr infer`` records (:mod:`dualsr_deploy.infer.consistency`): PSNR, MAE, spectral
  angle (mean, 99th percentile) and worst band under the block mean and the bicubic operator, the detail added over
  bicubic, and ``suspect`` with the reason;
- per-band PSNR under the block mean (the curves of the report);
- maps of where the output disagrees with its input: spectral angle and mean absolute difference per LR pixel
  (block mean);
- the spatial misalignment: the shift, in LR pixels, that phase correlation finds between the LR's band mean and the
  output's block mean (a shift past :data:`SHIFT_SUSPECT` LR pixels marks the output suspect too).

SR values are brought into the LR's normalised units (physical values over the LR's factor), whatever units or dtype
they were written in.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualsr_deploy._version import __version__
from dualsr_deploy.data.archive import open_archive
from dualsr_deploy.data.formats import open_scene
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.data.validity import fill_invalid
from dualsr_deploy.errors import DataError, InputError
from dualsr_deploy.infer.consistency import band_psnr, scene_check, suspect
from dualsr_deploy.ops.imresize import imresize

SHIFT_SUSPECT = 0.25  # LR pixels: a grid shifted by one output pixel at ×2 is 0.5 LR pixel off
BASELINE = "bicubic"


@dataclass
class SceneConsistency:
    """One LR scene: per method (the baseline ``bicubic`` first), its figures (with ``shift`` in LR pixels, rows
    then columns, and ``suspect``), its per-band PSNR (block mean), and its maps (spectral angle, mean absolute
    difference per LR pixel; not serialised)."""

    name: str
    shape: tuple[int, int, int]
    wavelengths: tuple[float, ...] | None
    good_bands: list[int]
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    bands: dict[str, list[float]] = field(default_factory=dict)
    maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "wavelengths": list(self.wavelengths) if self.wavelengths else None,
            "good_bands": self.good_bands,
            "figures": self.figures,
            "band_psnr_db": self.bands,
        }


@dataclass
class ConsistencyReport:
    scale: int
    methods: list[str]
    scenes: list[SceneConsistency]
    failed: list[tuple[str, str]]
    seconds: float
    sources: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "without HR: each output against its own input",
            "scale": self.scale,
            "methods": self.methods,
            "sources": self.sources,
            "scenes": [scene.to_dict() for scene in self.scenes],
            "failed": [{"name": n, "error": e} for n, e in self.failed],
            "seconds": round(self.seconds, 3),
            "versions": {"dualsr": __version__, "torch": torch.__version__},
        }

    @property
    def suspects(self) -> list[tuple[str, str, str]]:
        """(scene, method, reason) of every suspect output."""
        return [
            (scene.name, method, str(figures["suspect"]))
            for scene in self.scenes
            for method, figures in scene.figures.items()
            if figures.get("suspect")
        ]


def method_labels(sr_dirs: Sequence[Path]) -> list[str]:
    """A label per SR folder: its name, made unique."""
    labels: list[str] = []
    for folder in sr_dirs:
        label = folder.name or str(folder)
        while label in labels or label == BASELINE:
            label += "'"
        labels.append(label)
    return labels


def evaluate_without_hr(
    lr_source: str | os.PathLike[str],
    sr_dirs: Sequence[Path],
    *,
    scale: int,
    maps: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> ConsistencyReport:
    """Score the SR of every LR scene of ``lr_source`` in each of ``sr_dirs`` against its input (see the module
    docstring); scenes that fail are listed in ``failed`` and the rest go on."""
    if not sr_dirs:
        raise InputError("without HR scenes, give the outputs to check: --sr FOLDER (repeat to compare folders)")
    for folder in sr_dirs:
        if not Path(folder).is_dir():
            raise InputError(f"--sr {folder}: no such folder")
    say = progress or (lambda _name, _done, _total: None)
    labels = method_labels(sr_dirs)
    archive = open_archive(lr_source)
    started = time.perf_counter()
    scenes: list[SceneConsistency] = []
    failed: list[tuple[str, str]] = []
    for index, entry in enumerate(archive.entries):
        say(entry.name, index, len(archive.entries))
        if entry.error is not None:
            failed.append((entry.name, entry.error))
            continue
        try:
            with archive.open(entry) as reader:
                lr = reader.load()
            outputs = {label: _sr(folder, entry.name, lr, scale) for label, folder in zip(labels, sr_dirs, strict=True)}
            scenes.append(scene_consistency(entry.name, lr, outputs, scale, maps))
        except (DataError, InputError, OSError, ValueError, RuntimeError) as exc:
            failed.append((entry.name, str(exc)))
        say(entry.name, index + 1, len(archive.entries))
    sources = {"lr": str(lr_source), **{label: str(folder) for label, folder in zip(labels, sr_dirs, strict=True)}}
    return ConsistencyReport(scale, [BASELINE, *labels], scenes, failed, time.perf_counter() - started, sources)


def _sr(folder: Path, name: str, lr: Scene, scale: int) -> np.ndarray:
    """The SR of scene ``name`` in ``folder``, in the LR's normalised units ``(C, s·h, s·w)``."""
    from dualsr_deploy.evaluation.core import _find

    path = _find(folder, name, "SR")
    with open_scene(path) as reader:
        values = reader.physical(reader.read_raw()).astype(np.float64) / lr.meta.scale_factor
    c, h, w = lr.cube.shape
    if values.shape != (c, scale * h, scale * w):
        raise DataError(
            f"{path}: {values.shape[0]}×{values.shape[1]}×{values.shape[2]}, the LR at ×{scale} makes "
            f"{c}×{scale * h}×{scale * w}; is it this scene's output at this scale?"
        )
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def scene_consistency(name: str, lr: Scene, outputs: dict[str, np.ndarray], scale: int, maps: bool) -> SceneConsistency:
    """The figures, curves and (with ``maps``) maps of each output ``(C, s·h, s·w)`` normalised as ``lr`` is, and of
    the bicubic interpolation of ``lr`` first."""
    good = lr.good
    filled = lr.cube if lr.valid is None else fill_invalid(lr.cube, lr.valid)
    baseline = imresize(torch.from_numpy(filled).double(), scale).clamp(0, 1).float().numpy()
    result = SceneConsistency(name, lr.shape, lr.meta.wavelengths, [int(i) for i in np.flatnonzero(good)])
    for method, sr in {BASELINE: baseline, **outputs}.items():
        check = scene_check(lr.cube, lr.valid, good, sr, scale, lr.meta.scale_factor)
        figures = check.result()
        if figures is None:
            raise DataError(f"{name}: no valid pixel in a good band; nothing to compare")
        shift = misalignment(lr, sr, scale)
        figures["shift_lr_pixels"] = [round(shift[0], 3), round(shift[1], 3)]
        reasons = [reason for reason in (suspect(figures),) if reason]
        if max(abs(shift[0]), abs(shift[1])) > SHIFT_SUSPECT:
            reasons.append(
                f"shifted by ({shift[0]:+.2f}, {shift[1]:+.2f}) LR pixels (rows, columns) against its input by phase "
                f"correlation (suspect past {SHIFT_SUSPECT:g})"
            )
        figures["suspect"] = "; ".join(reasons) or None
        result.figures[method] = figures
        result.bands[method] = band_psnr(check, "area")
        if maps:
            result.maps[method] = disagreement(lr, sr, scale)
    return result


def _area(sr: np.ndarray, scale: int) -> np.ndarray:
    c, h, w = sr.shape
    return sr.astype(np.float64).reshape(c, h // scale, scale, w // scale, scale).mean(axis=(2, 4))


def disagreement(lr: Scene, sr: np.ndarray, scale: int) -> dict[str, np.ndarray]:
    """Per LR pixel: the spectral angle (degrees) and the mean absolute difference (the product's units) between the
    output's block mean and the input, over good bands; NaN at invalid pixels."""
    good = lr.good
    mine, theirs = _area(sr, scale)[good], lr.cube.astype(np.float64)[good]
    dot = (mine * theirs).sum(axis=0)
    norms = np.linalg.norm(mine, axis=0) * np.linalg.norm(theirs, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        angle = np.degrees(np.arccos(np.clip(dot / norms, -1.0, 1.0)))
    l1 = np.abs(mine - theirs).mean(axis=0) * lr.meta.scale_factor
    if lr.valid is not None:
        angle[~lr.valid] = np.nan
        l1[~lr.valid] = np.nan
    return {"sam_deg": angle.astype(np.float32), "l1": l1.astype(np.float32)}


def misalignment(lr: Scene, sr: np.ndarray, scale: int) -> tuple[float, float]:
    """The shift (rows, columns) in LR pixels that best aligns the output's block mean with the input (phase
    correlation of the band means, with a parabolic fit around the peak for sub-pixel shifts); (0, 0) for a scene
    too small to say."""
    good = lr.good
    reference = lr.cube[good].astype(np.float64).mean(axis=0)
    moved = _area(sr, scale)[good].mean(axis=0)
    if min(reference.shape) < 8:
        return 0.0, 0.0
    if lr.valid is not None:  # invalid pixels take the scene's mean, not a step
        reference = np.where(lr.valid, reference, reference[lr.valid].mean() if lr.valid.any() else 0.0)
        moved = np.where(lr.valid, moved, moved[lr.valid].mean() if lr.valid.any() else 0.0)
    window = np.outer(np.hanning(reference.shape[0]), np.hanning(reference.shape[1]))
    a = np.fft.fft2((reference - reference.mean()) * window)
    b = np.fft.fft2((moved - moved.mean()) * window)
    cross = b * np.conj(a)
    # whitened, but not all the way: smooth scenes hold little power at high frequencies, whose phase is noise
    cross /= np.abs(cross) + 1e-3 * np.abs(cross).max()
    surface = np.real(np.fft.ifft2(cross))
    peak = np.unravel_index(int(np.argmax(surface)), surface.shape)
    shift = []
    for axis, size in enumerate(surface.shape):
        index = peak[axis]
        before = list(peak)
        after = list(peak)
        before[axis] = (index - 1) % size
        after[axis] = (index + 1) % size
        left, centre, right = surface[tuple(before)], surface[peak], surface[tuple(after)]
        curvature = left - 2 * centre + right
        offset = 0.5 * (left - right) / curvature if curvature != 0 else 0.0
        value = index + offset
        shift.append(value - size if value > size / 2 else value)
    return float(shift[0]), float(shift[1])


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


__all__ = [
    "BASELINE",
    "SHIFT_SUSPECT",
    "ConsistencyReport",
    "SceneConsistency",
    "disagreement",
    "evaluate_without_hr",
    "misalignment",
    "scene_consistency",
]
