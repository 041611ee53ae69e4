"""dualsr-deploy: DualSR hyperspectral super-resolution from research code to production.

Public names (kept stable, DESIGN.md "Layout"): :func:`load_coarsr`, :func:`imresize`, :func:`backproject`,
:mod:`dualsr_deploy.metrics` (``evaluate``).
"""

import os
import sys

if "torch" not in sys.modules:  # OpenMP reads it once, when torch loads; a value the user set is kept
    # threads that wait sleep instead of spinning: on a shared machine (HPC node, cloud VM, Ray worker) spinning
    # threads ran 19.6x slower beside two busy neighbours, passive ones 1.8x (benchmarks/results/threads_2cpu.md)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dualsr_deploy import metrics
from dualsr_deploy._version import __version__
from dualsr_deploy.models import load_coarsr
from dualsr_deploy.ops.backproject import backproject
from dualsr_deploy.ops.imresize import imresize

__all__ = ["__version__", "backproject", "imresize", "load_coarsr", "metrics"]
