"""One record builder for every scene, held whole or streamed: what the scene went through (:class:`SceneFacts`)
becomes its manifest record (:func:`scene_record`, :func:`finished_record`), its notes (:func:`scene_notes`) and its
quality layer (:func:`quality`), the same way for both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dualsr_deploy.data.scene import Scene
from dualsr_deploy.data.validity import MIN_SEGMENT
from dualsr_deploy.infer.compute import split_segments
from dualsr_deploy.infer.consistency import suspect
from dualsr_deploy.infer.manifest import SceneRecord, Status
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.infer.plan import PlannedScene
from dualsr_deploy.infer.quality import counts, qa_scene, quality_layer


@dataclass
class SceneFacts:
    """What a scene went through: the runs of good bands run through the network (``network``) and upsampled
    bicubically (``short``, fewer than :data:`MIN_SEGMENT`), how many bands were flagged bad, how many LR pixels
    were invalid (filled for the network), and how many output values its integer dtype could not hold
    (``clipped``, counted as the output is converted)."""

    network: list[tuple[int, int]]
    short: list[tuple[int, int]]
    bad_bands: int = 0
    invalid_pixels: int = 0
    clipped: int = 0
    dtype: str = "float32"
    # values capped at the clip ceiling per band (the network went brighter than the scene's brightest value)
    ceiling: np.ndarray | None = None
    factor: float = 1.0  # the scene's normalisation factor: the ceiling in its own units

    @classmethod
    def of(cls, good: np.ndarray, source: str, *, invalid_pixels: int = 0, dtype: str = "float32") -> SceneFacts:
        """From the good-band flags ``(C,)`` of a scene read from ``source``."""
        network, short = split_segments(good, source)
        return cls(network, short, int((~good).sum()), invalid_pixels, dtype=dtype)

    @classmethod
    def of_scene(cls, scene: Scene) -> SceneFacts:
        invalid = 0 if scene.valid is None else int((~scene.valid).sum())
        return cls.of(
            scene.good, scene.meta.origin or scene.meta.source, invalid_pixels=invalid, dtype=scene.meta.dtype
        )


def scene_notes(facts: SceneFacts) -> list[str]:
    """What a record says about what happened to a scene, in this order: segments, short runs, filled pixels,
    values capped at the clip ceiling, values clipped to the output dtype."""
    notes = []
    if len(facts.network) > 1 or facts.short or facts.bad_bands:
        runs = ", ".join(f"{a}-{b - 1}" for a, b in facts.network)
        notes.append(f"good bands super-resolved in {len(facts.network)} segment(s): {runs}")
    for a, b in facts.short:
        notes.append(f"bands {a}-{b - 1}: fewer than {MIN_SEGMENT} good bands between bad ones, upsampled bicubically")
    if facts.invalid_pixels:
        notes.append(f"{facts.invalid_pixels} invalid LR pixels filled from their nearest valid pixel for the network")
    if facts.ceiling is not None and facts.ceiling.any():
        total, bands = int(facts.ceiling.sum()), int(np.count_nonzero(facts.ceiling))
        notes.append(
            f"{total} output values in {bands} band(s) capped at the clip ceiling ({facts.factor:g} in the scene's "
            "units, its brightest input value or normalisation factor): the network went brighter there; --no-clip "
            "keeps its values"
        )
    if facts.clipped:
        notes.append(f"{facts.clipped} values rounded and clipped to the range of {facts.dtype}")
    return notes


def scene_record(
    options: InferOptions,
    planned: PlannedScene,
    status: Status,
    *,
    worker: str | None = None,
    notes: list[str] | None = None,
    **facts: Any,
) -> SceneRecord:
    """The manifest record of a planned scene that ended with ``status`` (``facts``: the other fields)."""
    entry = planned.entry
    choice = planned.weights
    spec = (options.for_weights(choice) or options).backend  # the family's backend: its precision may differ
    return SceneRecord(
        entry.name,
        entry.source,
        status,
        input_sha256=planned.digest,
        input_files=[dict(item) for item in planned.input_files],
        backend=spec.label,
        precision_choice=spec.precision_choice or None,
        backend_choice=spec.backend_choice or None,
        weights=choice.family if choice is not None else spec.weights_label(options.scale),
        weights_choice=f"auto: {choice.reason}" if choice is not None else None,
        stage=options.stage,
        stage_choice=options.stage_choice or None,
        scale=options.scale,
        shape_in=list(entry.shape) if entry.shape else None,
        mode=planned.mode,
        tiles=planned.tiles,
        worker=worker,
        notes=([planned.reason] if planned.reason and status == "ok" else []) + (notes or []),
        **facts,
    )


def finished_record(
    options: InferOptions,
    planned: PlannedScene,
    facts: SceneFacts,
    *,
    shape_out: list[int],
    sam_weight: float | None,
    seconds: dict[str, float],
    qa: dict[str, int] | None,
    worker: str | None = None,
    consistency: dict[str, Any] | None = None,
) -> SceneRecord:
    """The ``ok`` record of a computed scene, held whole or streamed."""
    return scene_record(
        options,
        planned,
        "ok",
        worker=worker,
        notes=scene_notes(facts),
        output=str(planned.output),
        shape_out=shape_out,
        sam_weight=sam_weight,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        qa=qa,
        consistency=consistency,
        suspect=suspect(consistency),
    )


def quality(valid: np.ndarray | None, lr_shape: tuple[int, int], output: Scene, scale: int, radius: int) -> Scene:
    """The quality layer (``--qa``) of an output, from its LR validity ``(H, W)`` (None: all valid), as a one-band
    scene with the output's georeferencing; :func:`quality_counts` gives its counts for the record."""
    return qa_scene(quality_layer(valid, lr_shape, scale, radius), output)


def quality_counts(layer: Scene) -> dict[str, int]:
    return counts(layer.cube[0].astype(np.uint8))


__all__ = ["SceneFacts", "finished_record", "quality", "quality_counts", "scene_notes", "scene_record"]
