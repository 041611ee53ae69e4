"""Executors: who runs the planned scenes. :class:`~dualsr_deploy.infer.executors.local.LocalExecutor` runs them
in this process (reader, compute and writer threads); the Ray executor (``ray_spec`` what to ask of the cluster,
``ray_driver`` the session and the scheduling policy, ``ray_worker`` the long-lived workers) on a cluster. Both
take the same :class:`~dualsr_deploy.infer.executors.base.Job` and return an
:class:`~dualsr_deploy.infer.executors.base.Outcome`; both call
:func:`~dualsr_deploy.infer.pipeline.process_scene`'s steps, so they cannot drift apart."""

from dualsr_deploy.infer.executors.base import Job, Outcome

__all__ = ["Job", "Outcome"]
