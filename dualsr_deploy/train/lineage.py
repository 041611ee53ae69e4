"""Where a fine-tuned run's weights came from: the ``init`` record of its provenance (``dualsr train --init``).

A run started from weights records what they were: the shipped family and file when they are shipped weights
(matched by SHA-256, wherever the file was copied), the file name otherwise; their size, and when it differs from
the run's, that they were grown; and, from their own provenance, the recipe, store, steps, seconds and validation
that made them, with their own ``init`` record when they too were fine-tuned. The record is kept in the resume
file, so a resumed run writes the same one; :mod:`dualsr_deploy.train.card` prints it as "Started from".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualsr_deploy.archs.coarsr import CoarSRConfig
from dualsr_deploy.checkpoint import CheckpointInfo


def shipped_name(sha256: str) -> str | None:
    """``the <family> family's <file>`` for a file whose SHA-256 is one of the shipped weights', else None."""
    from dualsr_deploy.weights import list_shipped

    for shipped in list_shipped():
        if shipped.sha256 == sha256:
            return f"the {shipped.family} family's {shipped.path.name}"
    return None


def init_record(path: Path, info: CheckpointInfo, run_model: CoarSRConfig) -> dict[str, Any]:
    """The provenance record of a run started from the weights ``path`` (read as ``info``)."""
    name = shipped_name(info.sha256) or path.name
    size = f"n_feats {info.n_feats}, n_blocks {info.n_blocks}"
    if (info.n_feats, info.n_blocks) != (run_model.n_feats, run_model.n_blocks):
        size += f", grown to n_feats {run_model.n_feats}, n_blocks {run_model.n_blocks}"
    theirs = info.provenance
    record: dict[str, Any] = {
        "weights": f"{name} (SHA-256 {info.sha256}; {size})",
        "sha256": info.sha256,
        "its_recipe": theirs.get("recipe"),
        "its_store": theirs.get("store"),
        "its_steps": theirs.get("total_steps", theirs.get("steps")),
        "its_seconds": theirs.get("seconds"),
        "its_validation": theirs.get("validation"),
    }
    if isinstance(theirs.get("init"), dict):
        record["its_init"] = theirs["init"]
    return record
