"""dualsr-deploy: DualSR hyperspectral super-resolution from research code to production.

Public names (kept stable, DESIGN.md "Layout"): :func:`load_coarsr`, :func:`imresize`, :func:`backproject`,
:mod:`dualsr_deploy.metrics` (``evaluate``). They are imported on first use, so that importing the package (and
``dualsr --help``) does not load torch.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from dualsr_deploy._version import __version__

if "torch" not in sys.modules:  # OpenMP reads it once, when torch loads; a value the user set is kept
    # idle threads spin briefly on a quiet machine and sleep at once on a busy one: spinning threads ran 19.6x
    # slower beside two busy neighbours, and sleeping ones 1.65x slower on a quiet machine (see _waiting.py)
    from dualsr_deploy._waiting import choose

    choose()

# torch's maps were handed back to the kernel and faulted in again at every band step (1.3x on a 285-band window):
# glibc keeps them (see _malloc.py); a choice the user made in the environment is kept
from dualsr_deploy._malloc import configure as _configure_malloc

_configure_malloc()

if TYPE_CHECKING:
    from dualsr_deploy import metrics
    from dualsr_deploy.models import load_coarsr
    from dualsr_deploy.ops.backproject import backproject
    from dualsr_deploy.ops.imresize import imresize

_LAZY = {
    "metrics": ("dualsr_deploy.metrics", None),
    "load_coarsr": ("dualsr_deploy.models", "load_coarsr"),
    "backproject": ("dualsr_deploy.ops.backproject", "backproject"),
    "imresize": ("dualsr_deploy.ops.imresize", "imresize"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dualsr_deploy' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = importlib.import_module(module)
    return value if attribute is None else getattr(value, attribute)


__all__ = ["__version__", "backproject", "imresize", "load_coarsr", "metrics"]
