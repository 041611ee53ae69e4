"""Figures of an evaluation (matplotlib, Agg): what a person looks at to believe the numbers.

Per scene: pseudo-RGB renderings of HR and every method; absolute-error maps of chosen bands for every method on
one colour scale (as the paper's figures 3–4); per-band PSNR curves and the distribution of per-pixel SAM; spectra
at chosen (or automatically picked) pixels against ground truth (as the paper's figure 5).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from dualsr_deploy.evaluation.core import SceneResult
from dualsr_deploy.optional import require


def pyplot() -> Any:
    matplotlib = require("matplotlib", feature="drawing figures", extra="report", hint="(or --no-figures)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    pyplot().close(fig)
    return buffer.getvalue()


def pseudo_rgb(cube: np.ndarray, wavelengths: tuple[float, ...] | None) -> np.ndarray:
    """sRGB under D65 when the bands lie in the visible range with known wavelengths, otherwise three bands
    (at 80 %, 50 % and 20 % of the band range as R, G, B) stretched to their 99th percentile."""
    if (
        wavelengths is not None
        and len(wavelengths) == cube.shape[0]
        and min(wavelengths) >= 380
        and max(wavelengths) <= 780
    ):
        from dualsr_deploy.data.synth import render_srgb

        return np.clip(render_srgb(cube, wavelengths), 0, 1)
    c = cube.shape[0]
    rgb = np.stack([cube[int(f * (c - 1))] for f in (0.8, 0.5, 0.2)], axis=-1)
    return np.clip(rgb / max(float(np.percentile(rgb, 99)), 1e-6), 0, 1)


def default_bands(count: int) -> tuple[int, ...]:
    return tuple(sorted({round(f * (count - 1)) for f in (0.15, 0.5, 0.85)}))


def pick_pixels(scene: SceneResult, methods: list[str], count: int = 3) -> list[tuple[int, int]]:
    """Among pixels bright enough for their angle to mean something (mean above the scene's 25th percentile):
    where bicubic's spectrum is worst (largest angle), where the last method's is worst, and a typical one
    (median angle of the last method)."""
    hr = scene.cubes["HR"]
    brightness = hr.mean(0)
    dark = brightness <= np.percentile(brightness, 25)
    picks: list[tuple[int, int]] = []

    def angles(sr: np.ndarray) -> np.ndarray:
        dot = (sr * hr).sum(0)
        norms = np.linalg.norm(sr, axis=0) * np.linalg.norm(hr, axis=0) + 1e-12
        return np.degrees(np.arccos(np.clip(dot / norms, -1, 1)))

    for method, rule in (("bicubic", "max"), (methods[-1], "max"), (methods[-1], "median")):
        a = np.where(dark, np.nan, angles(scene.cubes[method]))
        valid = np.flatnonzero(~dark)
        order = valid[np.argsort(a.flat[valid])]
        flat = int(order[-1]) if rule == "max" else int(order[order.size // 2])
        pixel = divmod(flat, a.shape[1])
        if pixel not in picks:
            picks.append(pixel)
    return picks[:count]


def scene_figures(
    scene: SceneResult,
    methods: list[str],
    *,
    bands: tuple[int, ...] | None = None,
    pixels: tuple[tuple[int, int], ...] | None = None,
) -> dict[str, bytes]:
    """PNG bytes by figure name: ``rgb``, ``errors``, ``bands``, ``spectra``."""
    plt = pyplot()
    hr = scene.cubes["HR"]
    c = hr.shape[0]
    shown = bands or default_bands(c)
    bad = [b for b in shown if not 0 <= b < c]
    if bad:
        from dualsr_deploy.errors import InputError

        raise InputError(f"{scene.name}: bands {bad} do not exist (the scene has {c}, numbered 0…{c - 1})")
    wl = scene.wavelengths

    def label(band: int) -> str:
        return f"band {band} ({wl[band]:.0f} nm)" if wl and len(wl) == c else f"band {band}"

    out: dict[str, bytes] = {}

    panels = ["HR", *methods]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for ax, name in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(pseudo_rgb(scene.cubes[name], wl))
        title = name if name == "HR" else f"{name}\n{scene.scores[name]['psnr']:.2f} dB"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    out["rgb"] = png_bytes(fig)

    errors = [np.abs(scene.cubes[m] - hr) for m in methods]
    top = max(float(np.percentile(np.stack([e[list(shown)] for e in errors]), 99.5)), 1e-6)
    fig, axes = plt.subplots(len(shown), len(methods), figsize=(3 * len(methods), 3 * len(shown)), squeeze=False)
    image = None
    for row, band in enumerate(shown):
        for col, method in enumerate(methods):
            ax = axes[row][col]
            image = ax.imshow(errors[col][band], cmap="magma", vmin=0, vmax=top)
            ax.set_title(f"{method} · {label(band)}", fontsize=8)
            ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.6, label="|SR − HR|")
    out["errors"] = png_bytes(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    x = np.asarray(wl) if wl and len(wl) == c else np.arange(c)
    for method in methods:
        left.plot(x, scene.bands[method]["psnr"], label=method)
        right.plot(scene.sam_quantiles[method], np.linspace(0, 100, 21), label=method)
    left.set_xlabel("wavelength (nm)" if wl and len(wl) == c else "band")
    left.set_ylabel("PSNR (dB)")
    left.set_title("per-band PSNR", fontsize=10)
    right.set_xlabel("spectral angle (°)")
    right.set_ylabel("pixels at or below (%)")
    right.set_title("distribution of per-pixel SAM", fontsize=10)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.grid(alpha=0.3)
    out["bands"] = png_bytes(fig)

    picks = list(pixels) if pixels else pick_pixels(scene, methods)
    fig, axes = plt.subplots(1, len(picks), figsize=(4.2 * len(picks), 3.4), squeeze=False)
    for ax, (y, xx) in zip(axes[0], picks, strict=True):
        if not (0 <= y < hr.shape[1] and 0 <= xx < hr.shape[2]):
            from dualsr_deploy.errors import InputError

            raise InputError(f"{scene.name}: pixel ({y}, {xx}) lies outside the {hr.shape[1]}×{hr.shape[2]} scene")
        ax.plot(x, hr[:, y, xx], "k-", linewidth=2.2, label="HR")
        for method in methods:
            ax.plot(x, scene.cubes[method][:, y, xx], linewidth=1.1, label=method)
        ax.set_title(f"pixel (row {y}, col {xx})", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    out["spectra"] = png_bytes(fig)
    return out
