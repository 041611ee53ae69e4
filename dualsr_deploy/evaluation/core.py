"""``evaluate_archive``: bicubic, the coarse stage and the fine stage (per backend) scored against ground truth.

Inputs are HR scenes, from which LR is simulated by the paper's protocol (optional Gaussian blur, MATLAB bicubic
×1/s, optional noise: :func:`dualsr_deploy.data.degrade.degrade`), or HR scenes with their LR given (``lr=``,
matched by name), and optionally existing SR outputs (``sr=``, e.g. a ``dualsr infer`` folder, matched by name).
Every score is :func:`dualsr_deploy.metrics.evaluate` on the clipped result against the HR cube cropped to a
multiple of the scale.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualsr_deploy import metrics
from dualsr_deploy._version import __version__
from dualsr_deploy.data.archive import open_archive
from dualsr_deploy.data.degrade import Blur, degrade, modcrop
from dualsr_deploy.data.formats import read_scene
from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.errors import DataError, InputError
from dualsr_deploy.evaluation.without_hr import BASELINE, SceneConsistency
from dualsr_deploy.evaluation.without_hr import scene_consistency as consistency_of
from dualsr_deploy.infer.options import BackendSpec, InferOptions
from dualsr_deploy.infer.quality import CLEAN, INVALID, counts, quality_layer
from dualsr_deploy.infer.stages import AUTO_STAGE, choose_stage
from dualsr_deploy.infer.upscaler import Upscaler
from dualsr_deploy.ops.imresize import imresize
from dualsr_deploy.weights import FamilyChoice

# The DualSR paper's CAVE results (its own test split), for orientation only: never computed here.
PAPER_CAVE = {
    4: {
        "bicubic": {"psnr": 35.755, "ssim": 0.9071, "sam": 3.944},
        "CoarSR": {"psnr": 39.665, "ssim": 0.9328, "sam": 3.152},
        "DualSR": {"psnr": 39.813, "ssim": 0.9339, "sam": 3.130},
    },
    8: {
        "bicubic": {"psnr": 31.805, "ssim": 0.8485, "sam": 5.291},
        "CoarSR": {"psnr": 35.475, "ssim": 0.8828, "sam": 4.269},
        "DualSR": {"psnr": 35.628, "ssim": 0.8862, "sam": 4.411},
    },
}


@dataclass(frozen=True)
class EvalOptions:
    scale: int = 4
    backends: tuple[BackendSpec, ...] = (BackendSpec(),)
    stage: str = "auto"  # resolved as dualsr infer resolves it (stage_choice says why)
    blur: Blur | None = None
    noise_sigma: float = 0.0
    seed: int = 0
    tile: int | None = None  # None: as dualsr infer chooses
    lr: Path | None = None
    sr: Path | None = None
    bands_shown: tuple[int, ...] | None = None
    pixels: tuple[tuple[int, int], ...] | None = None
    figures: bool = True
    limit: int | None = None
    clean_only: bool = False  # score only output pixels computed from valid input alone (quality class "clean")
    stage_choice: str = ""

    def __post_init__(self) -> None:
        if self.stage == AUTO_STAGE:
            stage, why = choose_stage(self.scale, self.backends[0].has_weights)
            object.__setattr__(self, "stage", stage)
            object.__setattr__(self, "stage_choice", why)


@dataclass
class EvaluatedScene:
    name: str
    shape: tuple[int, int, int]
    wavelengths: tuple[float, ...] | None
    scores: dict[str, dict[str, float]]  # method → metric → value
    bands: dict[str, dict[str, list[float]]]  # method → psnr/ssim → per band
    sam_quantiles: dict[str, list[float]]  # method → SAM° at 0, 5, …, 100 %
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)
    cubes: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # for figures; dropped after
    in_training: bool = False  # the scene was in the training set of the weights used (their provenance says)
    quality: dict[str, int] | None = None  # HR pixels per quality class, when the scene has invalid pixels
    weights: str | None = None  # the shipped family --weights auto chose for the scene, with why
    # method → each result brought back to the LR grid against the LR (dualsr_deploy.infer.consistency), the
    # figures that need no HR, beside the scores that do
    consistency: dict[str, dict[str, Any]] = field(default_factory=dict)
    checked: SceneConsistency | None = field(default=None, repr=False)  # its curves and maps, for the figures


@dataclass
class EvalReport:
    scale: int
    protocol: str
    methods: list[str]
    scenes: list[EvaluatedScene]
    failed: list[tuple[str, str]]
    seconds: float
    versions: dict[str, str]

    @property
    def paper_rows(self) -> dict[str, dict[str, float]]:
        """The paper's CAVE results at this scale, shown for orientation when every scene is CAVE-like (31 bands);
        none beside other data, which they say nothing about."""
        if not self.scenes or any(scene.shape[0] != 31 for scene in self.scenes):
            return {}
        return PAPER_CAVE.get(self.scale, {})

    @property
    def mixed(self) -> bool:
        """Some scenes, not all, were seen in training: means over the held-out ones are worth showing apart."""
        return any(s.in_training for s in self.scenes) and not all(s.in_training for s in self.scenes)

    def mean(self, method: str, *, held_out_only: bool = False) -> dict[str, float]:
        rows = [
            scene.scores[method]
            for scene in self.scenes
            if method in scene.scores and not (held_out_only and scene.in_training)
        ]
        if not rows:
            return {}
        return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "protocol": self.protocol,
            "methods": self.methods,
            "mean": {method: self.mean(method) for method in self.methods},
            "mean_held_out": {method: self.mean(method, held_out_only=True) for method in self.methods},
            "scenes": [
                {
                    "name": s.name,
                    "shape": list(s.shape),
                    "scores": s.scores,
                    "bands": s.bands,
                    "sam_quantiles": s.sam_quantiles,
                    "seconds": s.seconds,
                    "notes": s.notes,
                    "in_training": s.in_training,
                    "quality": s.quality,
                    "weights": s.weights,
                    "consistency": s.consistency,
                }
                for s in self.scenes
            ],
            "failed": [{"name": n, "error": e} for n, e in self.failed],
            "paper_reference": {
                "note": "the DualSR paper's CAVE results on its own test split, for orientation; not computed here",
                "rows": self.paper_rows,
            },
            "seconds": self.seconds,
            "versions": self.versions,
        }


def method_names(options: EvalOptions) -> list[str]:
    names = ["bicubic"]
    several = len(options.backends) > 1
    for spec in options.backends:
        suffix = f" [{spec.label}]" if several else ""
        names.append(f"coarse{suffix}")
        if options.stage != "coarse":
            names.append(f"{'fine' if options.stage == 'dual' else 'backproject'}{suffix}")
    if options.sr is not None:
        names.append(f"given ({options.sr.name})")
    return names


def _find(folder: Path, name: str, what: str) -> Path:
    """The one scene of ``folder`` with the HR scene's relative name (``a/scene`` → ``folder/a/scene.<suffix>``
    for a scene suffix, or a CAVE folder ``a/scene`` / ``a/scene_ms``); none or several is a :class:`DataError`.
    Other names beginning with the scene's (``scene.backup.npy``) and scenes of the same name in other sub-folders
    are never taken for it."""
    from dualsr_deploy.data.formats import SCENE_SUFFIXES

    base = folder / name
    candidates = [base.with_name(base.name + suffix) for suffix in sorted(SCENE_SUFFIXES)]
    candidates += [base.with_name(base.name + suffix.upper()) for suffix in sorted(SCENE_SUFFIXES)]
    matches = sorted({p for p in candidates if p.is_file()})
    matches += [p for p in (base, base.with_name(base.name + "_ms")) if p.is_dir()]
    if not matches:
        raise DataError(
            f"{folder}: no {what} scene {name}.<{'|'.join(sorted(s[1:] for s in SCENE_SUFFIXES))}> "
            f"to pair with HR scene {name}"
        )
    if len(matches) > 1:
        listed = ", ".join(str(p.relative_to(folder)) for p in matches)
        raise DataError(f"{folder}: {len(matches)} {what} scenes could pair with HR scene {name} ({listed}); keep one")
    return matches[0]


def evaluate_archive(
    hr_source: str | os.PathLike[str],
    options: EvalOptions | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalReport:
    """Score every HR scene of ``hr_source``; scenes that fail are listed in ``failed`` and the rest go on."""
    options = options or EvalOptions()
    if options.stage not in ("coarse", "dual", "backproject"):
        raise InputError(f"unknown stage {options.stage!r}")
    say = progress or (lambda _name, _done, _total: None)
    archive = open_archive(hr_source)
    upscalers = [
        Upscaler(InferOptions(scale=options.scale, stage=options.stage, backend=spec, tile=options.tile))
        for spec in options.backends
    ]
    methods = method_names(options)
    protocol = (
        f"LR given ({options.lr})"
        if options.lr
        else f"LR = MATLAB bicubic ×1/{options.scale}"
        + (
            f" after Gaussian blur {options.blur.size}×{options.blur.size}, σ {options.blur.sigma:g}"
            if options.blur
            else ""
        )
        + (f", noise σ {options.noise_sigma:g} (seed {options.seed})" if options.noise_sigma else "")
    )
    started = time.perf_counter()
    scenes: list[EvaluatedScene] = []
    failed: list[tuple[str, str]] = []
    entries = archive.entries[: options.limit] if options.limit else archive.entries
    trained_on: dict[FamilyChoice | None, set[str]] = {}
    used: dict[str, str] = {}
    try:
        for index, entry in enumerate(entries):
            say(entry.name, index, len(entries))
            try:
                result, choice = _one(entry.name, entry.path, entry.key, options, upscalers, methods)
                if choice not in trained_on:
                    trained_on[choice] = _train_scenes(upscalers, options, choice, used)
                base = Path(entry.name).name
                result.in_training = base in trained_on[choice] or base.removesuffix("_ms") in trained_on[choice]
                if result.in_training:
                    result.notes.append("seen in training by the weights used (their provenance lists it)")
                scenes.append(result)
            except (DataError, InputError, OSError, ValueError, RuntimeError) as exc:
                failed.append((entry.name, entry.error or str(exc)))
            say(entry.name, index + 1, len(entries))
    finally:
        for upscaler in upscalers:
            upscaler.close()
    versions = {"dualsr": __version__, "torch": torch.__version__, **used}
    return EvalReport(options.scale, protocol, methods, scenes, failed, time.perf_counter() - started, versions)


def _train_scenes(
    upscalers: Sequence[Upscaler], options: EvalOptions, choice: FamilyChoice | None, used: dict[str, str]
) -> set[str]:
    """The scenes the weights ``--weights auto`` chose (None: the run's) were trained on, by their provenance; the
    weights files go into ``used`` (the report's versions)."""
    family = choice.family if choice is not None else None
    names: set[str] = set()
    several = len(upscalers) > 1
    for upscaler in upscalers:
        pool = upscaler.route(choice).pool
        for scale in (options.scale, options.scale // 2) if options.stage == "dual" else (options.scale,):
            info = pool.model(scale).info
            names.update(info.provenance.get("train_scenes", []))
            where = f" [{upscaler.label}]" if several else ""
            label = f" ({family})" if family else ""
            used[f"weights ×{scale}{label}{where}"] = f"{Path(info.path).name} {info.sha256[:12]}"
    return names


def _one(
    name: str, path: Path, key: str | None, options: EvalOptions, upscalers: Sequence[Upscaler], methods: list[str]
) -> tuple[EvaluatedScene, FamilyChoice | None]:
    s = options.scale
    timings: dict[str, float] = {}
    t = time.perf_counter()
    scene = read_scene(path, key=key)
    good = torch.from_numpy(scene.good)
    hr = modcrop(torch.from_numpy(scene.cube), s)[good]  # bad bands are not scored
    hr_valid = modcrop(torch.from_numpy(scene.valid)[None], s)[0].numpy() if scene.valid is not None else None
    lr_valid = None
    if options.lr is not None:
        lr_scene = read_scene(_find(options.lr, name, "LR"))
        lr = torch.from_numpy(lr_scene.cube)[good] if lr_scene.cube.shape[0] == good.numel() else None
        if lr is None or tuple(lr.shape) != (hr.shape[0], hr.shape[1] // s, hr.shape[2] // s):
            raise DataError(f"{name}: LR {lr_scene.cube.shape} does not match HR {tuple(hr.shape)} at ×{s}")
        lr_valid = lr_scene.valid
    else:
        lr = degrade(hr, s, blur=options.blur, noise_sigma=options.noise_sigma, seed=options.seed)
        if hr_valid is not None:
            lr_valid = lr_validity(hr_valid, s)
    timings["read"] = time.perf_counter() - t
    choice = upscalers[0].options.choose_weights(scene.cube.shape[0], scene.meta.wavelengths) if upscalers else None
    results: dict[str, torch.Tensor] = {}
    t = time.perf_counter()
    results["bicubic"] = imresize(lr.double(), s).clamp(0, 1).float()
    timings["bicubic"] = time.perf_counter() - t
    several = len(upscalers) > 1
    for upscaler in upscalers:
        suffix = f" [{upscaler.label}]" if several else ""
        t = time.perf_counter()
        stages = upscaler(lr, lr_valid, weights=choice)
        timings[f"sr{suffix}"] = time.perf_counter() - t
        # scored clipped to [0, 1], as the published test script scores (outputs keep an input's negative values)
        results[f"coarse{suffix}"] = stages.coarse.cpu().clamp(0, 1)
        if stages.fine is not None:
            results[f"{'fine' if options.stage == 'dual' else 'backproject'}{suffix}"] = stages.fine.cpu().clamp(0, 1)
    if options.sr is not None:
        given = torch.from_numpy(read_scene(_find(options.sr, name, "SR")).cube)
        if given.shape[0] == good.numel() and given.shape[0] != hr.shape[0]:
            given = given[good]
        if given.shape != hr.shape:
            raise DataError(f"{name}: the given SR is {tuple(given.shape)}, the HR {tuple(hr.shape)}")
        results[methods[-1]] = given.clamp(0, 1)
    t = time.perf_counter()
    hr64 = hr.double()
    scores, bands, quantiles = {}, {}, {}
    levels = torch.linspace(0, 1, 21, dtype=torch.float64)
    mask, quality = scoring_mask(hr_valid, lr_valid, s, options, upscalers, choice)
    notes = list(scene.meta.notes)
    if choice is not None:
        notes.append(f"weights: {choice.describe()}")
    if quality is not None:
        notes.append("output pixels by quality: " + ", ".join(f"{k} {v}" for k, v in quality.items()))
    if mask is not None:
        notes.append(
            f"scored over {int(mask.sum())} of {mask.size} pixels ({'clean' if options.clean_only else 'valid'}) "
            f"and {int(good.sum())} good bands"
        )
    for method, sr in results.items():
        if mask is None:
            scores[method] = metrics.evaluate(sr.double(), hr64, scale=s)
        else:
            scores[method] = metrics.evaluate_masked(sr.double(), hr64, torch.from_numpy(mask), scale=s)
        per_band = metrics.band_metrics(sr.double(), hr64)
        bands[method] = {"psnr": per_band["psnr"].tolist(), "ssim": per_band["ssim"].tolist()}
        angles = metrics.sam_map(sr, hr).flatten()
        stride = max(1, angles.numel() // 2**24 + 1)  # torch.quantile takes at most 2^24 values
        quantiles[method] = torch.quantile(angles[::stride], levels).tolist()
    timings["metrics"] = time.perf_counter() - t
    t = time.perf_counter()
    # the same figures as without HR (bicubic, then each result), against the LR the results came from; the bad
    # bands are left out of lr and the results already
    wavelengths = scene.meta.wavelengths
    kept = tuple(w for w, g in zip(wavelengths, good.tolist(), strict=True) if g) if wavelengths else None
    lr_cube = np.ascontiguousarray(lr.float().numpy())
    lr_scene = Scene(name, lr_cube, SceneMeta("lr", "hdf5", wavelengths=kept), valid=lr_valid)
    others = {method: np.ascontiguousarray(sr.float().numpy()) for method, sr in results.items() if method != BASELINE}
    checked = consistency_of(name, lr_scene, others, s, options.figures)
    timings["consistency"] = time.perf_counter() - t
    cubes = {"HR": hr.numpy(), **{m: r.numpy() for m, r in results.items()}} if options.figures else {}
    result = EvaluatedScene(
        name,
        tuple(hr.shape),  # type: ignore[arg-type]
        scene.meta.wavelengths,
        scores,
        bands,
        quantiles,
        {k: round(v, 3) for k, v in timings.items()},
        notes,
        cubes,
        quality=quality,
        weights=choice.describe() if choice is not None else None,
        consistency=checked.figures,
        checked=checked if options.figures else None,
    )
    return result, choice


def lr_validity(hr_valid: np.ndarray, scale: int) -> np.ndarray:
    """The LR pixels a simulated LR can trust: those whose s×s HR block, widened by the bicubic kernel's reach (2
    LR pixels), is valid."""
    from scipy.ndimage import minimum_filter

    h, w = hr_valid.shape
    blocks = hr_valid.reshape(h // scale, scale, w // scale, scale).all(axis=(1, 3))
    return np.asarray(minimum_filter(blocks.astype(np.uint8), size=5, mode="nearest") > 0)


def scoring_mask(
    hr_valid: np.ndarray | None,
    lr_valid: np.ndarray | None,
    scale: int,
    options: EvalOptions,
    upscalers: Sequence[Upscaler],
    choice: FamilyChoice | None = None,
) -> tuple[np.ndarray | None, dict[str, int] | None]:
    """The HR pixels to score (None: all) and the quality counts: valid HR pixels whose LR source was valid, and with
    ``clean_only`` only those computed from valid input alone (:mod:`dualsr_deploy.infer.quality`)."""
    if hr_valid is None and lr_valid is None:
        return None, None
    shape = hr_valid.shape if hr_valid is not None else (scale * lr_valid.shape[0], scale * lr_valid.shape[1])  # type: ignore[union-attr]
    lr_shape = (shape[0] // scale, shape[1] // scale)
    reach = max((upscaler.reach_for(choice) for upscaler in upscalers), default=0)
    layer = quality_layer(lr_valid, lr_shape, scale, reach)
    mask = layer > INVALID if not options.clean_only else layer == CLEAN
    if hr_valid is not None:
        mask &= hr_valid
    if not mask.any():
        raise DataError(f"no {'clean' if options.clean_only else 'valid'} pixel left to score")
    return mask, counts(layer)
