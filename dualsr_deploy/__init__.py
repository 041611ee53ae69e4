"""dualsr-deploy: DualSR hyperspectral super-resolution from research code to production.

Public names (kept stable, DESIGN.md "Layout"): :func:`load_coarsr`, :func:`imresize`, :func:`backproject`,
:mod:`dualsr_deploy.metrics` (``evaluate``).
"""

from dualsr_deploy import metrics
from dualsr_deploy._version import __version__
from dualsr_deploy.models import load_coarsr
from dualsr_deploy.ops.backproject import backproject
from dualsr_deploy.ops.imresize import imresize

__all__ = ["__version__", "backproject", "imresize", "load_coarsr", "metrics"]
