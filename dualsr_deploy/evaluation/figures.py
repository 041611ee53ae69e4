"""Figures of an evaluation (matplotlib, Agg): what a person looks at to believe the numbers.

Per scene: pseudo-RGB renderings of HR and every method; absolute-error maps of chosen bands for every method on
one colour scale (as the paper's figures 3–4); per-band PSNR curves and the distribution of per-pixel SAM; spectra
at chosen (or automatically picked) pixels against ground truth (as the paper's figure 5).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from dualsr_deploy.evaluation.core import EvaluatedScene
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


def _visible(cube: np.ndarray, wavelengths: tuple[float, ...] | None) -> bool:
    return (
        wavelengths is not None
        and len(wavelengths) == cube.shape[0]
        and min(wavelengths) >= 380
        and max(wavelengths) <= 780
    )


def rgb_bands(count: int) -> tuple[int, int, int]:
    """The bands shown as R, G, B when the spectra cannot be rendered: at 80 %, 50 % and 20 % of the band range."""
    r, g, b = (int(f * (count - 1)) for f in (0.8, 0.5, 0.2))
    return r, g, b


def pseudo_rgb(cube: np.ndarray, wavelengths: tuple[float, ...] | None) -> np.ndarray:
    """sRGB under D65 when the bands lie in the visible range with known wavelengths, otherwise three bands
    (:func:`rgb_bands`) stretched to their 99th percentile."""
    if _visible(cube, wavelengths):
        from dualsr_deploy.data.synth import render_srgb

        assert wavelengths is not None
        return np.clip(render_srgb(cube, wavelengths), 0, 1)
    rgb = np.stack([cube[band] for band in rgb_bands(cube.shape[0])], axis=-1)
    return np.clip(rgb / max(float(np.percentile(rgb, 99)), 1e-6), 0, 1)


def rgb_caption(cube: np.ndarray, wavelengths: tuple[float, ...] | None) -> str:
    """What the pseudo-RGB renderings show, bands named (index, and wavelength when known)."""
    if _visible(cube, wavelengths):
        return "Pseudo-RGB renderings: sRGB under D65, rendered from the visible spectra"
    c = cube.shape[0]
    known = wavelengths is not None and len(wavelengths) == c

    def name(band: int) -> str:
        return f"band {band} ({wavelengths[band]:.0f} nm)" if known and wavelengths else f"band {band}"

    r, g, b = rgb_bands(c)
    why = "" if known else " (the scene has no wavelengths)"
    shown = f"R = {name(r)}, G = {name(g)}, B = {name(b)}{why}"
    return f"Pseudo-RGB renderings: {shown}, each stretched to its 99th percentile"


def spectral_angles(sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """Per-pixel spectral angle (degrees) between ``sr`` and ``hr`` ``(C, H, W)``."""
    dot = (sr * hr).sum(0)
    norms = np.linalg.norm(sr, axis=0) * np.linalg.norm(hr, axis=0) + 1e-12
    return np.degrees(np.arccos(np.clip(dot / norms, -1, 1)))


def default_bands(count: int) -> tuple[int, ...]:
    return tuple(sorted({round(f * (count - 1)) for f in (0.15, 0.5, 0.85)}))


def pick_pixels(scene: EvaluatedScene, methods: list[str], count: int = 3) -> list[tuple[int, int, str]]:
    """Among pixels bright enough for their angle to mean something (mean above the scene's 25th percentile):
    where bicubic's spectrum is worst (largest angle), where the last method's is worst, and a typical one
    (median angle of the last method); each (row, column, why it was picked)."""
    hr = scene.cubes["HR"]
    brightness = hr.mean(0)
    dark = brightness <= np.percentile(brightness, 25)
    picks: list[tuple[int, int, str]] = []
    for method, rule in (("bicubic", "max"), (methods[-1], "max"), (methods[-1], "median")):
        a = np.where(dark, np.nan, spectral_angles(scene.cubes[method], hr))
        valid = np.flatnonzero(~dark)
        order = valid[np.argsort(a.flat[valid])]
        flat = int(order[-1]) if rule == "max" else int(order[order.size // 2])
        row, col = divmod(flat, a.shape[1])
        why = f"{method}'s {'largest' if rule == 'max' else 'median'} angle ({a[row, col]:.2f}°)"
        if (row, col) not in [(r, c) for r, c, _ in picks]:
            picks.append((row, col, why))
    return picks[:count]


def overlapping(curves: dict[str, np.ndarray], tolerance: float) -> list[tuple[str, str]]:
    """Pairs of methods whose curves differ by at most ``tolerance`` everywhere (drawn over each other)."""
    names = list(curves)
    return [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if np.nanmax(np.abs(np.asarray(curves[a]) - np.asarray(curves[b]))) <= tolerance
    ]


def scene_figures(
    scene: EvaluatedScene,
    methods: list[str],
    *,
    bands: tuple[int, ...] | None = None,
    pixels: tuple[tuple[int, int], ...] | None = None,
) -> dict[str, bytes]:
    """PNG bytes by figure name: ``rgb``, ``errors``, ``bands``, ``spectra``; and their captions (what each shows,
    said for this scene: the bands of the pseudo-RGB, curves that overlap, why each pixel was picked) by the same
    names under ``caption:<name>``, UTF-8."""
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

    captions = {"rgb": rgb_caption(hr, wl)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    x = np.asarray(wl) if wl and len(wl) == c else np.arange(c)
    styles = ["-", "--", ":", "-."]
    for index, method in enumerate(methods):
        style = styles[index % len(styles)]
        left.plot(x, scene.bands[method]["psnr"], style, label=method)
        angles = np.sort(spectral_angles(scene.cubes[method], hr).ravel())  # every pixel's angle
        right.plot(angles, 100 * np.arange(1, angles.size + 1) / angles.size, style, label=method)
    same_psnr = overlapping({m: np.asarray(scene.bands[m]["psnr"]) for m in methods}, 0.01)
    said = "; ".join(f"{a} and {b} overlap (within 0.01 dB in every band)" for a, b in same_psnr)
    captions["bands"] = "Per-band PSNR, and the cumulative distribution of every pixel's spectral angle" + (
        f". {said}" if said else ""
    )
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

    picks = [(y, xx, "chosen with --pixel") for y, xx in pixels] if pixels else pick_pixels(scene, methods)
    fig, axes = plt.subplots(1, len(picks), figsize=(4.2 * len(picks), 3.4), squeeze=False)
    for ax, (y, xx, why) in zip(axes[0], picks, strict=True):
        if not (0 <= y < hr.shape[1] and 0 <= xx < hr.shape[2]):
            from dualsr_deploy.errors import InputError

            raise InputError(f"{scene.name}: pixel ({y}, {xx}) lies outside the {hr.shape[1]}×{hr.shape[2]} scene")
        ax.plot(x, hr[:, y, xx], "k-", linewidth=2.2, label="HR")
        for method in methods:
            ax.plot(x, scene.cubes[method][:, y, xx], linewidth=1.1, label=method)
        ax.set_title(f"pixel (row {y}, col {xx}):\n{why}", fontsize=8)
        ax.set_xlabel("wavelength (nm)" if wl and len(wl) == c else "band")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("value (normalised units)")
    axes[0][0].legend(fontsize=7)
    out["spectra"] = png_bytes(fig)
    captions["errors"] = "Absolute error of chosen bands, one colour scale for all methods"
    count = "one pixel" if len(picks) == 1 else f"{len(picks)} pixels"
    captions["spectra"] = f"Spectra against ground truth at {count}, " + (
        "picked where the methods do worst or at a typical pixel (each panel's title says why)"
        if not pixels
        else "given with --pixel"
    )
    for key, text in captions.items():
        out[f"caption:{key}"] = text.encode()
    return out
