"""Optional dependencies, imported where they are used; a missing one names the extra that provides it."""

from __future__ import annotations

import importlib
from typing import Any

from dualsr_deploy.errors import OptionalDependencyError


def require(module: str, *, feature: str, extra: str) -> Any:
    """Import ``module`` or raise an :class:`OptionalDependencyError` saying ``feature`` needs ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise OptionalDependencyError(
            f"{feature} needs {module.split('.')[0]}: pip install 'dualsr-deploy[{extra}]'"
        ) from None
