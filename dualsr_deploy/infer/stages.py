"""``--stage``: the stages a run may take, and what ``--stage auto`` chooses and why."""

from __future__ import annotations

from collections.abc import Callable

STAGES = ("coarse", "dual", "backproject")
AUTO_STAGE = "auto"
# Where no ×s/2 model exists (×2 always; ×3, ×8 without one), --stage auto takes this: measured on the held-out
# scenes of both shipped families at ×2 (benchmarks/stage_auto.py; README "Stages"), see STAGE_AUTO_EVIDENCE.
STAGE_WITHOUT_HALF = "backproject"
STAGE_AUTO_EVIDENCE = (
    "on the held-out scenes at ×2 it beats coarse on all five: +0.009 dB CAVE, +0.004 dB airborne; "
    "benchmarks/stage_auto.py"
)


def choose_stage(scale: int, has_weights: Callable[[int], bool]) -> tuple[str, str]:
    """``--stage auto``: ``dual`` where a ×s/2 CoarSR exists (the paper), else :data:`STAGE_WITHOUT_HALF`; returns
    the stage and the line that says why (printed, and kept in the manifest like ``--precision auto``'s)."""
    if scale % 2 == 0 and scale >= 4 and has_weights(scale // 2):
        return "dual", f"--stage auto → dual (a ×{scale // 2} CoarSR exists for the fine stage, as in the paper)"
    why = "×2 has no ×1 model" if scale == 2 else f"there is no ×{scale / 2:g} CoarSR"
    return STAGE_WITHOUT_HALF, f"--stage auto → {STAGE_WITHOUT_HALF} ({why}; {STAGE_AUTO_EVIDENCE})"


__all__ = ["AUTO_STAGE", "STAGES", "STAGE_AUTO_EVIDENCE", "STAGE_WITHOUT_HALF", "choose_stage"]
