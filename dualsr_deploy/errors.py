"""Typed, actionable errors. Every message says what was wrong and how to fix it."""

from __future__ import annotations


class DualSRError(Exception):
    """Base class of every error this package raises on purpose (the CLI prints these without a traceback)."""


class CheckpointError(DualSRError):
    """A file is not a usable CoarSR checkpoint (not a checkpoint, wrong keys, wrong shapes)."""


class ScaleMismatchError(DualSRError):
    """A checkpoint's scale differs from the one the caller asked for."""


class InputError(DualSRError, ValueError):
    """An input tensor cannot be processed (band count, rank, dtype, non-finite values)."""


class NeighbourRuleError(DualSRError, ValueError):
    """An unknown neighbour rule was requested."""


class DataError(DualSRError):
    """A scene file or archive cannot be read or written (names the file and what to do about it)."""


class OptionalDependencyError(DualSRError, ImportError):
    """A feature needs a package that is not installed; the message names the extra that provides it."""
