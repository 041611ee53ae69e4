"""Shared test fixtures. ``../shared`` (reference fixtures and data) is read in place and skipped when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUALSR_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    path = SHARED / "reference"
    if not path.is_dir():
        pytest.skip(f"reference fixtures not found at {path} (set DUALSR_SHARED to the shared folder)")
    return path
