"""Backends: the runtimes a user picks (``--backend torch|onnx|trt``) behind one contract
(:class:`~dualsr_deploy.backends.base.Backend`: open, run an LR tile batch, close, capabilities), built by name
through :func:`create` alone; :func:`backend_kind` says what each is before one is opened. ``status`` says
which of them this machine can run."""

from dualsr_deploy.backends.base import Backend, Capabilities
from dualsr_deploy.backends.factory import BACKENDS, check_backend, create
from dualsr_deploy.backends.kinds import BACKEND_KINDS, BackendKind, backend_kind

__all__ = [
    "BACKENDS",
    "BACKEND_KINDS",
    "Backend",
    "BackendKind",
    "Capabilities",
    "backend_kind",
    "check_backend",
    "create",
]
