"""dualsr-deploy: DualSR hyperspectral super-resolution from research code to production.

Public names (kept stable, DESIGN.md "Layout"): :func:`load_coarsr`.
"""

from dualsr_deploy._version import __version__
from dualsr_deploy.models import load_coarsr

__all__ = ["__version__", "load_coarsr"]
