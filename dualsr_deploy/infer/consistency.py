"""How faithful an output is to its own input, without ground truth: the SR brought back to the LR grid and compared
with the LR it came from (what ESA's OpenSR benchmark calls consistency), for every output as it is written.

Two operators bring the SR back: ``bicubic``, MATLAB's ``imresize(sr, 1/s)`` (the degradation the fine stage itself
inverts), and ``area``, the mean of each s×s block (operator-neutral: what an outside judge would do). Each is
compared with the LR on its valid pixels and good bands, in the product's units (normalised × the scene's factor):

- ``psnr_db``: against the scene's valid range (max − min of the LR's valid values);
- ``mae``: mean absolute difference, in the product's units;
- ``sam_deg`` and ``sam_p99_deg``: mean and 99th percentile of the per-pixel spectral angle, degrees;
- ``worst_band``: the band (0-based) with the largest RMS difference.

``added_detail``: the RMS of SR − ``imresize(lr, s)`` over valid output pixels, relative to the same range: how much
the output differs from an interpolation of its input; ``bicubic_area_psnr_db``: that interpolation brought back by
the block mean, the level an output should reach (:func:`suspect` flags one far below it). SR values at invalid
pixels are taken as 0 before degrading.

The figures are accumulated over row strips (:class:`StripConsistency`; float32 arrays, float64 sums), so an
in-memory scene and a streamed one give the same numbers (to rounding) within a bounded memory: a strip holds what
``memory`` allows (:func:`strip_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dualsr_deploy.ops.imresize import imresize_banded

OPERATORS = ("bicubic", "area")
CONSISTENCY_ATTR = "dualsr_consistency"  # the figures in an output's attributes (its provenance), as JSON
# An output is suspect when its block mean goes back to its input worse than the bicubic interpolation of that
# input does, by more than this: on the nine product samples at ×2 the outputs were 0.9-3.4 dB above the
# interpolation, and the same outputs shifted by one output pixel 10.2-16.6 dB below it (another scene, a wrong scale
# or wrong units: 13-60 dB below).
SUSPECT_MARGIN_DB = 3.0
# ... unless it goes back within this of its input's range anyway (RMSE under 0.3 % of it): on very smooth scenes
# bicubic interpolation goes back almost exactly (102 dB on the generated EMIT-like granule of benchmarks/granule.py)
# and any detail the network adds costs more than the margin against it, while every broken output measured above
# went back at 41 dB or worse.
CONSISTENT_DB = 50.0
HALO = 4  # LR rows around a strip: beyond the reach of both bicubic kernels (downscaling ±(2s+1) HR, upscaling ±3 LR)
STRIP = 64  # LR rows a strip holds at most
MEMORY = 512 * 2**20  # bytes a strip's arrays may take, unless the run says otherwise
ARRAYS = 6  # output-grid float32 arrays a strip holds at once (its SR, bicubic(LR), their difference, copies)


def strip_rows(bands: int, width: int, scale: int, memory: int = MEMORY) -> int:
    """LR rows per strip: as many as :data:`STRIP`, fewer when ``memory`` bytes cannot hold the output-grid arrays
    of that many (and the halo), never fewer than 8."""
    per_row = ARRAYS * 4 * bands * scale * scale * width
    return max(8, min(STRIP, memory // max(per_row, 1) - 2 * HALO))


class Consistency:
    """Sums over the LR rows added so far, for ``good`` bands ``(C,)`` at ×``scale``; ``factor``: the scene's
    normalisation factor (normalised × factor = the product's units)."""

    def __init__(self, good: np.ndarray, scale: int, factor: float) -> None:
        self.good, self.scale, self.factor = np.asarray(good, dtype=bool), scale, float(factor)
        bands = int(self.good.sum())
        self.squared = {op: np.zeros(bands) for op in OPERATORS}  # per good band
        self.absolute = dict.fromkeys(OPERATORS, 0.0)
        self.angles: dict[str, list[np.ndarray]] = {op: [] for op in OPERATORS}
        self.pixels = 0
        self.low, self.high = math.inf, -math.inf
        self.detail_squared, self.detail_count = 0.0, 0
        self.reference_squared = 0.0  # bicubic(LR) brought back by the block mean: the level an output should reach

    def add(
        self,
        lr: np.ndarray,
        valid: np.ndarray,
        degraded: dict[str, np.ndarray],
        reference: np.ndarray,
        detail: tuple[float, int],
    ) -> None:
        """LR rows ``lr (C, n, W)`` with their validity ``(n, W)``, the output brought back to them by each operator
        and bicubic(LR) brought back by the block mean (``(C, n, W)`` each, float32), and the sum of squares and count
        of output − bicubic(LR) over the valid output pixels of good bands; sums are accumulated in float64."""
        good, every_band, every_pixel = self.good, bool(self.good.all()), bool(valid.all())

        def pick(cube: np.ndarray) -> np.ndarray:
            """``cube``'s good bands at valid pixels, as (bands, pixels): a view where nothing is left out."""
            chosen = cube if every_band else cube[good]
            return chosen.reshape(chosen.shape[0], -1) if every_pixel else chosen[:, valid]

        values = pick(lr)
        if values.size == 0:
            return
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))
        self.pixels += values.shape[1]
        norms = np.sqrt(np.einsum("bp,bp->p", values, values, dtype=np.float64))
        for op in OPERATORS:
            other = pick(degraded[op])
            difference = other - values
            self.squared[op] += np.einsum("bp,bp->b", difference, difference, dtype=np.float64)
            self.absolute[op] += float(np.abs(difference).sum(dtype=np.float64))
            dot = np.einsum("bp,bp->p", other, values, dtype=np.float64)
            denominator = np.sqrt(np.einsum("bp,bp->p", other, other, dtype=np.float64)) * norms
            usable = denominator > 0
            cosine = np.clip(dot[usable] / denominator[usable], -1.0, 1.0)
            self.angles[op].append(np.degrees(np.arccos(cosine)).astype(np.float32))
        gap = pick(reference) - values
        self.reference_squared += float(np.einsum("bp,bp->", gap, gap, dtype=np.float64))
        self.detail_squared += detail[0]
        self.detail_count += detail[1]

    def result(self) -> dict[str, Any] | None:
        """``{"bicubic": {...}, "area": {...}, "added_detail": x}`` (see the module docstring); None when no pixel
        was valid."""
        if self.pixels == 0:
            return None
        span = self.high - self.low
        bands = np.flatnonzero(self.good)
        count = self.pixels * len(bands)
        out: dict[str, Any] = {}
        for op in OPERATORS:
            mse = float(self.squared[op].sum()) / count
            angles = np.concatenate(self.angles[op]) if self.angles[op] else np.zeros(1, np.float32)
            out[op] = {
                "psnr_db": round(10 * math.log10(span * span / mse), 4) if mse > 0 and span > 0 else math.inf,
                "mae": float(f"{self.absolute[op] / count * self.factor:.6g}"),
                "sam_deg": round(float(angles.astype(np.float64).mean()), 4),
                "sam_p99_deg": round(float(np.percentile(angles, 99)), 4),
                "worst_band": int(bands[int(np.argmax(self.squared[op]))]),
            }
        rms = math.sqrt(self.detail_squared / self.detail_count) if self.detail_count else 0.0
        out["added_detail"] = round(rms / span, 6) if span > 0 else 0.0
        mse = self.reference_squared / count
        out["bicubic_area_psnr_db"] = round(10 * math.log10(span * span / mse), 4) if mse > 0 and span > 0 else math.inf
        return out


def band_psnr(check: Consistency, op: str) -> list[float]:
    """Per good band, the PSNR (dB, against the scene's valid range) of the output brought back by ``op``."""
    span = check.high - check.low
    out = []
    for squared in check.squared[op]:
        mse = squared / max(check.pixels, 1)
        out.append(round(10 * math.log10(span * span / mse), 4) if mse > 0 and span > 0 else math.inf)
    return out


def suspect(figures: dict[str, Any] | None) -> str | None:
    """Why an output does not go back to its input (see :data:`SUSPECT_MARGIN_DB`), or None."""
    if not figures:
        return None
    got, level = figures["area"]["psnr_db"], figures["bicubic_area_psnr_db"]
    if got < level - SUSPECT_MARGIN_DB and got < CONSISTENT_DB:
        return (
            f"averaged back to the input's grid it is {level - got:.1f} dB further from the input than bicubic "
            f"interpolation is ({got:.1f} against {level:.1f} dB; suspect past {SUSPECT_MARGIN_DB:g} dB below it "
            f"and under {CONSISTENT_DB:g} dB): a shifted grid, another scene, a wrong scale or wrong units"
        )
    return None


Rows = Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # LR rows [start, stop) → (cube (C, n, W), valid (n, W))


class StripConsistency:
    """Feeds :class:`Consistency` from SR rows handed over in order (:meth:`add_rows`), with LR rows read on demand
    (``lr_rows``); keeps only the SR rows a strip and its halo need."""

    def __init__(self, check: Consistency, lr_rows: Rows, height: int, width: int, memory: int = MEMORY) -> None:
        self.check, self.lr_rows, self.height, self.width = check, lr_rows, height, width
        self.scale = check.scale
        self.rows = strip_rows(len(check.good), width, check.scale, memory)
        self.parts: list[tuple[int, np.ndarray]] = []  # SR rows handed over and still needed: (first HR row, rows)
        self.done = 0  # LR rows accounted for

    def add_rows(self, first_row: int, rows: np.ndarray) -> None:
        """SR rows ``rows (C, n, s·W)`` (normalised; any view) starting at HR row ``first_row``, in order. Read in
        place by the strips they complete; the rows a later strip still needs (its halo) are copied."""
        expected = self.parts[-1][0] + self.parts[-1][1].shape[1] if self.parts else first_row
        if first_row != expected:
            raise ValueError(f"SR rows from {first_row} given, {expected} expected (rows must come in order)")
        self.parts.append((first_row, np.asarray(rows, dtype=np.float32)))
        self._advance(final=False)

    def finish(self) -> dict[str, Any] | None:
        self._advance(final=True)
        return self.check.result()

    def _advance(self, *, final: bool) -> None:
        """The strips whose rows and halo have come, each of :attr:`rows` LR rows from the top whatever rows the
        caller hands over at a time: a scene's strips, and so its figures to the last bit, do not depend on how its
        output was cut for writing (streamed or held whole)."""
        s = self.scale
        assert self.parts or final
        have = self.parts[-1][0] + self.parts[-1][1].shape[1] if self.parts else 0  # HR rows received
        while self.done < self.height:
            end = min(self.height, self.done + self.rows)
            if not final and s * min(self.height, end + HALO) > have:
                break
            self._strip(self.done, end)
            self.done = end
        keep = s * max(self.done - HALO, 0)  # the rows the next strip's halo still needs: copied, the caller's
        self.parts = [  # rows are theirs again once this returns
            (max(top, keep), np.array(rows[:, max(keep - top, 0) :], dtype=np.float32))
            for top, rows in self.parts
            if top + rows.shape[1] > keep
        ]

    def _sr_rows(self, start: int, stop: int) -> np.ndarray:
        """HR rows [start, stop) of the SR: a view of the part that holds them, or (across parts) a copy."""
        pieces = []
        for top, rows in self.parts:
            lo, hi = max(start, top), min(stop, top + rows.shape[1])
            if lo < hi:
                pieces.append(rows[:, lo - top : hi - top])
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)

    def _strip(self, start: int, stop: int) -> None:
        s = self.scale
        lo, hi = max(start - HALO, 0), min(stop + HALO, self.height)
        cube, valid = self.lr_rows(lo, hi)
        cube = np.ascontiguousarray(cube, dtype=np.float32)
        sr = torch.from_numpy(self._sr_rows(s * lo, s * hi))
        hr_valid = None
        if not valid.all():  # no-data SR values are not the product's
            hr_valid = torch.from_numpy(np.repeat(np.repeat(valid, s, axis=0), s, axis=1))
            sr = sr.masked_fill(~hr_valid, 0.0)
        core = slice(start - lo, stop - lo)
        hr_core = slice(s * (start - lo), s * (stop - lo))
        # only the core's rows of either resize: a strip's halo rows are there for the kernels' reach
        bicubic = imresize_banded(sr, 1 / s, rows=core).numpy()
        kept = sr[:, hr_core]
        up = imresize_banded(torch.from_numpy(cube), s, rows=hr_core)
        # the output-grid work (every output pixel) in torch's threads; float32 per band, added up in float64
        good = torch.from_numpy(self.check.good)
        if hr_valid is not None:
            difference = (kept - up)[good][:, hr_valid[hr_core]]
            detail = (float(difference.square().sum(dim=-1).double().sum()), int(difference.numel()))
        else:  # the same sums per band and row, without copying the good bands out first
            rows = (kept - up).square_().sum(dim=-1)[good]
            detail = (float(rows.double().sum()), int(rows.numel()) * kept.shape[-1])
        degraded = {"bicubic": bicubic, "area": _pool(kept, s)}
        self.check.add(cube[:, core], valid[core], degraded, _pool(up, s), detail)


def _pool(cube: torch.Tensor, scale: int) -> np.ndarray:
    """The mean of each s×s block of ``cube (C, s·h, s·w)``: a float32 array ``(C, h, w)``, summed in the order
    torch's ``avg_pool2d`` sums (row by row of the block, then ÷ s²; equal to it bit for bit, tested) from strided
    views: ~1.9× faster than it on a strip's rows (a 285 × 26 × 2560 view, ×2, 2-core Xeon)."""
    total: torch.Tensor | None = None
    h, w = cube.shape[-2] // scale * scale, cube.shape[-1] // scale * scale  # whole blocks, as avg_pool2d takes
    cube = cube[..., :h, :w].float()  # itself when float32, as the strips are
    for i in range(scale):
        for j in range(scale):
            part = cube[:, i::scale, j::scale]
            total = part.clone() if total is None else total.add_(part)
    assert total is not None
    return total.div_(scale * scale).numpy()


def scene_consistency(
    lr: np.ndarray,
    valid: np.ndarray | None,
    good: np.ndarray,
    sr: np.ndarray,
    scale: int,
    factor: float,
    memory: int = MEMORY,
) -> dict[str, Any] | None:
    """The figures of a scene held whole: ``lr (C, h, w)`` and ``sr (C, s·h, s·w)`` normalised, ``valid (h, w)``
    (None: all), computed strip by strip as a streamed scene's are."""
    return scene_check(lr, valid, good, sr, scale, factor, memory).result()


def scene_check(
    lr: np.ndarray,
    valid: np.ndarray | None,
    good: np.ndarray,
    sr: np.ndarray,
    scale: int,
    factor: float,
    memory: int = MEMORY,
) -> Consistency:
    """The accumulated :class:`Consistency` of a scene held whole (its per-band figures too: :func:`band_psnr`)."""
    _, h, w = lr.shape
    mask = np.ones((h, w), dtype=bool) if valid is None else valid

    def rows(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return lr[:, start:stop], mask[start:stop]

    check = Consistency(good, scale, factor)
    feeder = StripConsistency(check, rows, h, w, memory)
    step = scale * feeder.rows
    for top in range(0, sr.shape[1], step):
        feeder.add_rows(top, sr[:, top : top + step])
    feeder.finish()
    return check


__all__ = [
    "CONSISTENCY_ATTR",
    "CONSISTENT_DB",
    "OPERATORS",
    "SUSPECT_MARGIN_DB",
    "Consistency",
    "StripConsistency",
    "band_psnr",
    "scene_check",
    "scene_consistency",
    "suspect",
]
