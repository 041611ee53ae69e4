"""Shared test fixtures. ``../shared`` (reference fixtures and data) is read in place and skipped when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUALSR_SHARED", REPO.parent / "shared"))


def _shared(folder: str, what: str) -> Path:
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"{what} not found at {path} (set DUALSR_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    return _shared("reference", "reference fixtures")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _shared("data", "shared scenes")
