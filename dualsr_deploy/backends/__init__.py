"""Backends: the runtimes a user picks (``--backend torch|onnx|trt``) behind one contract
(:class:`~dualsr_deploy.backends.base.Backend`: open, run an LR tile batch, close, capabilities), built by name
through :func:`create` alone. ``status`` says which of them this machine can run."""

from dualsr_deploy.backends.base import Backend, Capabilities
from dualsr_deploy.backends.factory import BACKENDS, check_backend, create

__all__ = ["BACKENDS", "Backend", "Capabilities", "check_backend", "create"]
