"""The fine stage: SAM-weighted back-projection of the coarse result onto a lower-resolution guide (the ×s/2
coarse result for ``dual``, the LR input for ``backproject``). :func:`finish_stage` does it on whole cubes; for
scenes too large to hold whole, the same back-projection is computed in row strips, exactly.

``backproject`` needs one SAM weight per scene, from the whole image, so it runs in two passes over strips:

1. ``d = imresize(im_h, 1/f)`` strip by strip, and the sum of the per-pixel spectral angles against ``im_l``
   (the weight is their mean, as ``SAM.m`` computes it);
2. ``im_h + imresize(c·(im_l − d), f)`` strip by strip, written out as it is made.

A strip is computed on rows widened by a margin and cut back: MATLAB's resize kernel reaches 2 pixels at the
coarse resolution (``2f`` at the fine one), so with 8 coarse rows of margin the kept rows see exactly the inputs
the whole-image resize gives them. At the scene's top and bottom the widened strip stops at the border, where the
whole-image resize mirrors just the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from dualsr_deploy.metrics import sam_map
from dualsr_deploy.ops.backproject import backproject_with_weights
from dualsr_deploy.ops.imresize import imresize


def clip_range(values: torch.Tensor, floor: torch.Tensor | None = None, *, in_place: bool = False) -> torch.Tensor:
    """``values (C, H, W)`` clipped to [0, 1], or per band to [``floor[c]``, 1] where the input went below 0
    (``floor (C,)``: :attr:`SceneMeta.band_floor`), so that valid negative values of the input stay negative.
    ``in_place``: into ``values`` itself (a streamed strip: no strip-sized results to allocate)."""
    if floor is None:
        return values.clamp_(0, 1) if in_place else values.clamp(0, 1)
    low = floor.to(values.device, values.dtype).view(-1, 1, 1)
    if in_place:
        return torch.maximum(values.clamp_(max=1), low, out=values)
    return torch.maximum(values.clamp(max=1), low)


def floor_tensor(floor: tuple[float, ...] | None, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """:attr:`SceneMeta.band_floor` as a ``(C,)`` float32 tensor (None stays None)."""
    return None if floor is None else torch.tensor(floor, dtype=torch.float32, device=device)


def finish_stage(
    stage: str,
    clip: bool,
    high: torch.Tensor,
    low: torch.Tensor | None,
    lr: torch.Tensor,
    valid: torch.Tensor | None = None,
    floor: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float | None]:
    """A scene's result from its coarse ×s output ``high`` (and its ×s/2 one ``low`` for ``dual``), clipped to
    [0, 1] (per band to [``floor``, 1], see :func:`clip_range`) when ``clip``, with the fine stage's SAM weight
    (None for ``coarse``). Both coarse results are clipped before the fine stage, as the published test script
    does; ``backproject`` projects onto the LR input itself. All ``(C, H, W)`` float32 on one device; ``valid``: the
    guide's valid pixels ``(H, W)``, over which the SAM weight is averaged (None: all)."""
    if stage == "coarse":
        return (clip_range(high, floor) if clip else high), None
    guide = clip_range(low, floor) if low is not None else lr
    sr, weights = backproject_with_weights(clip_range(high, floor), guide, valid=valid)
    return (clip_range(sr, floor) if clip else sr), float(weights[0])


MARGIN = 8  # coarse rows

Rows = Callable[[int, int], torch.Tensor]  # rows [start, stop) of a (C, H, W) cube, as float32 on the device


def _down(high: Rows, high_rows: int, factor: int, start: int, stop: int) -> torch.Tensor:
    """``imresize(im_h, 1/factor)`` rows [start, stop) (coarse rows), from a widened strip of ``im_h``."""
    lo = max(start - MARGIN, 0)
    hi = min(stop + MARGIN, high_rows // factor)
    strip = high(lo * factor, hi * factor)
    down = imresize(strip, size=(hi - lo, strip.shape[-1] // factor))
    return down[:, start - lo : stop - lo]


def strips(rows: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, rows, step):
        yield start, min(start + step, rows)


def sam_weight_streamed(
    high: Rows,
    low: Rows,
    shape_low: tuple[int, int, int],
    factor: int,
    step: int,
    valid: Callable[[int, int], torch.Tensor] | None = None,
    done: Callable[[int, int], None] | None = None,
) -> float:
    """``min(mean SAM°(imresize(im_h, 1/f), im_l), 1)`` over the whole scene, reading ``step`` coarse rows at a
    time; ``valid(start, stop)`` gives the guide's valid pixels ``(n, W)`` of those rows (None: all); ``done(rows,
    of)`` after each strip (progress)."""
    rows = shape_low[1]
    total, count = 0.0, 0
    for start, stop in strips(rows, step):
        d = _down(high, rows * factor, factor, start, stop)
        angles = sam_map(d, low(start, stop))
        if valid is None:
            total, count = total + float(angles.sum()), count + angles.numel()
        else:
            keep = valid(start, stop)
            total, count = total + float(angles[keep].sum()), count + int(keep.sum())
        if done is not None:
            done(stop, rows)
    return min(total / max(count, 1), 1.0)


def backproject_streamed(
    high: Rows,
    low: Rows,
    shape_low: tuple[int, int, int],
    factor: int,
    weight: float,
    step: int,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(first fine row, refined rows)`` strip by strip: ``im_h + imresize(c·(im_l − d), f)``."""
    _, rows, _ = shape_low
    for start, stop in strips(rows, step):
        lo, hi = max(start - MARGIN, 0), min(stop + MARGIN, rows)
        d = _down(high, rows * factor, factor, lo, hi)
        correction = weight * (low(lo, hi) - d)
        up = imresize(correction, size=((hi - lo) * factor, correction.shape[-1] * factor))
        keep = up[:, (start - lo) * factor : (stop - lo) * factor]
        yield start * factor, high(start * factor, stop * factor) + keep
