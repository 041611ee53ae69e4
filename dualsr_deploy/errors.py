"""Every error type the package raises on purpose, in one place. Every message says what was wrong and how to fix
it; the CLI prints a :class:`DualSRError` as one line (exit status 2) instead of a traceback.

The hierarchy, by where the problem lies:

- the user's input: :class:`InputError` (and :class:`ShapeOutOfProfileError`, :class:`NeighbourRuleError`),
  :class:`DataError` (a scene file or archive), :class:`CheckpointError` / :class:`ScaleMismatchError` (weights),
  :class:`RecipeError` (an export recipe), :class:`TrainError` (a training run's options or files);
- this machine: :class:`OptionalDependencyError` (a package of an extra is missing),
  :class:`BackendUnavailableError` (a runtime, GPU or TensorRT is missing);
- a job as a whole: :class:`ExportError` (an artefact could not be made or checked), :class:`RunError` (an
  inference run cannot start), :class:`ClusterError` (the Ray cluster cannot run it), :class:`WorkerRefusedError`
  (one cluster worker's node cannot).
"""

from __future__ import annotations


class DualSRError(Exception):
    """Base class of every error this package raises on purpose (the CLI prints these without a traceback)."""


class CheckpointError(DualSRError):
    """A file is not a usable CoarSR checkpoint (not a checkpoint, wrong keys, wrong shapes)."""


class ScaleMismatchError(DualSRError):
    """A checkpoint's scale differs from the one the caller asked for."""


class InputError(DualSRError, ValueError):
    """An input tensor or option cannot be processed (band count, rank, dtype, non-finite values, bad values)."""


class ShapeOutOfProfileError(InputError):
    """A tile batch lies outside the shapes a TensorRT plan was built for."""


class NeighbourRuleError(DualSRError, ValueError):
    """An unknown neighbour rule was requested."""


class DataError(DualSRError):
    """A scene file or archive cannot be read or written (names the file and what to do about it)."""


class RemoteError(DataError):
    """A remote object could not be listed, read or written (the message names the URL and the reason)."""


class RecipeError(DualSRError):
    """An export recipe is invalid (names the file and the key)."""


class TrainError(DualSRError):
    """A training run cannot start or continue as asked."""


class OptionalDependencyError(DualSRError, ImportError):
    """A feature needs a package that is not installed; the message names the extra that provides it."""


class BackendUnavailableError(DualSRError):
    """A backend cannot run on this machine (missing package, GPU or TensorRT)."""


class ExportError(DualSRError):
    """An artefact (ONNX graph, TensorRT plan) could not be made, read or did not pass its checks."""


class RunError(DualSRError):
    """An inference run as a whole cannot start (bad options, an output folder holding another run, …)."""


class ClusterError(RunError):
    """The cluster cannot run the job (Ray missing, no cluster at the address, no worker could start, …)."""


class WorkerRefusedError(DualSRError):
    """A cluster worker's node cannot run the job (the reason is the message); the other workers go on."""


# What a scene's failure can raise: anything but what stops the process (Ctrl-C, exit) is recorded as that scene's,
# and the run goes on; a hostile file can make a library raise any type at all.
SCENE_ERRORS: tuple[type[Exception], ...] = (Exception,)
# What no scene can get past (a missing extra, no such backend here, weights an artefact was not made from): the run
# stops with it (exit 2), as it does when planning finds it.
RUN_ERRORS: tuple[type[Exception], ...] = (BackendUnavailableError, OptionalDependencyError, CheckpointError)

__all__ = [
    "RUN_ERRORS",
    "SCENE_ERRORS",
    "BackendUnavailableError",
    "CheckpointError",
    "ClusterError",
    "DataError",
    "DualSRError",
    "ExportError",
    "InputError",
    "NeighbourRuleError",
    "OptionalDependencyError",
    "RecipeError",
    "RemoteError",
    "RunError",
    "ScaleMismatchError",
    "ShapeOutOfProfileError",
    "TrainError",
    "WorkerRefusedError",
]
