"""JSON manifests written beside every artefact: what it was built from, and how."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.checkpoint import sha256_of

MANIFEST_SUFFIX = ".json"


def manifest_path(artefact: Path) -> Path:
    return artefact.with_name(artefact.name + MANIFEST_SUFFIX)


def write_manifest(artefact: Path, facts: Mapping[str, Any]) -> Path:
    """Write ``<artefact>.json`` with ``facts`` plus the artefact's name, size and SHA-256."""
    record = {"artefact": artefact.name, "bytes": artefact.stat().st_size, "sha256": sha256_of(artefact)}
    record.update(facts)
    target = manifest_path(artefact)
    with atomic_output(target) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return target


def read_manifest(artefact: Path) -> dict[str, Any]:
    path = manifest_path(artefact)
    data: dict[str, Any] = json.loads(path.read_text())
    return data
