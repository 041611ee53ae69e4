"""The CoarSR weights shipped with the package: the default of ``export`` (and of ``infer`` and the demo).

Each ``coarsr_x{scale}.safetensors`` is in the project's format (its provenance in the header) and is described by
``MODEL_CARD.md`` beside it: how it was trained, on what, and what it scores on held-out CAVE scenes.
"""

from __future__ import annotations

from pathlib import Path

from dualsr_deploy.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent
MODEL_CARD = WEIGHTS_DIR / "MODEL_CARD.md"


def shipped_scales() -> tuple[int, ...]:
    """The scales for which weights ship, ascending."""
    found = []
    for path in WEIGHTS_DIR.glob("coarsr_x*.safetensors"):
        digits = path.stem.removeprefix("coarsr_x")
        if digits.isdigit():
            found.append(int(digits))
    return tuple(sorted(found))


def shipped_weights(scale: int) -> Path:
    """The shipped ``.safetensors`` for ``scale``; a :class:`CheckpointError` naming the scales that exist."""
    path = WEIGHTS_DIR / f"coarsr_x{scale}.safetensors"
    if not path.is_file():
        have = ", ".join(f"×{s}" for s in shipped_scales()) or "none"
        raise CheckpointError(
            f"no shipped ×{scale} weights (shipped: {have}); pass --checkpoint PATH, or train one with "
            f"`dualsr train … --scale {scale}`"
        )
    return path
