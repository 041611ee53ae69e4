"""Validation on held-out whole scenes: PSNR / SSIM / SAM of the model and of the bicubic baseline."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from dualsr_deploy import metrics
from dualsr_deploy.archs.coarsr import CoarSR, per_band_loop
from dualsr_deploy.archs.neighbours import NeighbourRule
from dualsr_deploy.ops.imresize import imresize

VALIDATION_METRICS = ("psnr", "ssim", "sam")


@dataclass(frozen=True)
class SceneScore:
    name: str
    model: dict[str, float]
    bicubic: dict[str, float]


@dataclass(frozen=True)
class Validation:
    scenes: tuple[SceneScore, ...]

    def mean(self, which: str, metric: str) -> float:
        values = [getattr(scene, which)[metric] for scene in self.scenes]
        return sum(values) / len(values)

    def summary(self) -> dict[str, float]:
        """``{psnr, ssim, sam, bicubic_psnr, bicubic_ssim, bicubic_sam, gain_psnr}`` averaged over scenes."""
        out = {m: self.mean("model", m) for m in VALIDATION_METRICS}
        out |= {f"bicubic_{m}": self.mean("bicubic", m) for m in VALIDATION_METRICS}
        out["gain_psnr"] = out["psnr"] - out["bicubic_psnr"]
        return out


def score_cube(sr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
    return {"psnr": metrics.psnr(sr, hr), "ssim": metrics.ssim(sr, hr), "sam": metrics.sam(sr, hr)}


def bicubicscore_cube(lr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    """The baseline: MATLAB bicubic ``imresize(lr, scale)``, clipped to [0, 1], against ``hr``."""
    up = imresize(lr.double(), scale).clamp_(0.0, 1.0).float()
    return score_cube(up, hr)


@torch.no_grad()
def validate(
    model: CoarSR,
    scenes: Iterable[tuple[str, torch.Tensor, torch.Tensor]],
    *,
    rule: NeighbourRule,
    device: torch.device,
    baseline: dict[str, dict[str, float]] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Validation:
    """Score ``model`` (switched to eval mode and back) on ``(name, lr (C, h, w), hr (C, s·h, s·w))`` scenes.

    The SR cube is clipped to [0, 1] before scoring, as the published test script does. ``baseline`` caches the
    bicubic scores by scene name (they never change during a run) and is filled in when given.
    """
    was_training = model.training
    model.eval()
    results = []
    try:
        for name, lr, hr in scenes:
            lr_batch = lr.unsqueeze(0).to(device)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                sr = per_band_loop(model, lr_batch, rule)
            sr = sr[0].float().clamp_(0.0, 1.0).cpu()
            if baseline is not None and name in baseline:
                bicubic = baseline[name]
            else:
                bicubic = bicubicscore_cube(lr, hr, model.scale)
                if baseline is not None:
                    baseline[name] = bicubic
            results.append(SceneScore(name, score_cube(sr, hr), bicubic))
    finally:
        model.train(was_training)
    return Validation(tuple(results))
