"""Optional dependencies, imported where they are used, through this one module: :func:`require` when a feature
needs the package (a missing one is an error naming the extra that provides it), :func:`find` when the package
only adds something (a probe, a nicer log).

The extras (pyproject.toml): ``cpu`` (onnxruntime), ``gpu`` (onnxruntime-gpu, tensorrt), ``formats`` (rasterio,
spectral), ``slim`` (onnxslim), ``report`` (matplotlib), ``openvino`` (openvino), ``cluster`` (ray), ``remote``
(fsspec, s3fs, aiohttp, requests), ``dev``. ``isal`` (Intel ISA-L's deflate) is a dependency only where it has
wheels, and found here where it is installed.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dualsr_deploy.errors import DualSRError, OptionalDependencyError


def install_hint(extra: str) -> str:
    return f"pip install 'dualsr-deploy[{extra}]'"


def require(
    module: str, *, feature: str, extra: str, error: type[DualSRError] = OptionalDependencyError, hint: str = ""
) -> ModuleType:
    """Import ``module`` or raise ``error`` (an :class:`OptionalDependencyError` unless the caller's domain has its
    own, e.g. :class:`~dualsr_deploy.errors.BackendUnavailableError`) saying ``feature`` needs ``extra``;
    ``hint`` is appended (another way out, e.g. ``or --no-figures``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise error(
            f"{feature} needs {module.split('.')[0]}: {install_hint(extra)}{f' {hint}' if hint else ''}"
        ) from None


def find(module: str) -> ModuleType | None:
    """``module`` if it can be imported, else None (for what works without it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


__all__ = ["find", "install_hint", "require"]
