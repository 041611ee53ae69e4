"""The one writer family: every output is written strip by strip, a whole scene being one strip (as rasterio's
``rio convert`` treats every size with one windowed loop).

A :class:`StripWriter` takes ``write(first_row, rows)`` with ``rows (C, n, W)`` in the file's dtype, then
``commit()``. Each format's writer lives in its module under :mod:`dualsr_deploy.data.formats` and is found through
the format table. Nothing holds more than a strip: data goes to disk as it comes (``os.pwrite``, never a memory map,
whose written pages would count against the process). Every file is written under a temporary name in a staging
folder beside the target and renamed only by :meth:`StripWriter.commit`, so a run that stops half-way leaves no
partial file under the final name.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from dualsr_deploy.atomic import TEMP_SUFFIX, default_mode, temp_prefix, write_memory
from dualsr_deploy.data.formats.row import WriteOptions
from dualsr_deploy.data.scene import SceneMeta


class StripWriter:
    """``(C, H, W)`` written strip by strip: ``write(first_row, rows)`` with ``rows (C, n, W)`` in the file's dtype,
    then ``commit()``; ``abort()`` (or leaving a ``with`` block without committing) removes everything written."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: SceneMeta, options: WriteOptions
    ) -> None:
        self.path, self.shape, self.dtype, self.meta = path, shape, np.dtype(dtype), meta
        self.options = options
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(
            tempfile.mkdtemp(dir=self.path.parent, prefix=temp_prefix(self.path.name), suffix=TEMP_SUFFIX)
        )
        self.committed = False

    @contextlib.contextmanager
    def _removed_on_error(self) -> Iterator[None]:
        """Around a writer's setup: if it fails, what it made so far (the staging folder, open files) is removed."""
        try:
            yield
        except BaseException:
            self.abort()
            raise

    row_block = 1  # rows a write should start and end on, where it can: the file's chunk height (see chunk_writes)

    def write(self, first_row: int, rows: np.ndarray) -> None:
        raise NotImplementedError

    def add_attrs(self, attrs: Mapping[str, str]) -> None:
        """Attributes known only once every row is written (a streamed scene's consistency figures), before
        :meth:`commit`: in the provenance (``dualsr_scene``) as any attribute given at the start is."""
        self.meta = self.meta.replace(attrs={**self.meta.attrs, **attrs})
        self._provenance_changed()

    def _provenance_changed(self) -> None:
        """Writers that wrote their provenance when they opened write it again (the others write it at the end)."""

    def _finish(self) -> None:
        """Close the file(s) in :attr:`staging` and move them to their final names."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release open handles (after a failure too): a data file written at offsets (``raw``) or an HDF5 file
        (``file``), whichever the writer made; neither when its setup failed before making it."""
        raw = getattr(self, "raw", None)
        if raw is not None:
            raw.discard()
        file: Any = getattr(self, "file", None)
        if file is not None:
            file.close()
            self.file = None

    def commit(self) -> Path:
        self._finish()
        self.committed = True
        shutil.rmtree(self.staging, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        try:
            self._close()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def _hdf5_target(self) -> Path | io.BytesIO:
        """Where an HDF5-based writer makes its file: in memory for a whole scene (HDF5's C library can crash the
        process when the disk fills under its own writes; the one write to disk is then Python's, which raises a
        clear error), in the staging folder for a streamed one (too large to hold; its space is checked when the
        run is planned)."""
        if self.options.whole:
            self.memory: io.BytesIO | None = io.BytesIO()
            return self.memory
        return self.staging / self.path.name

    def _hdf5_written(self) -> Path:
        """The HDF5 file in the staging folder, a whole scene's written there from memory now."""
        written = self.staging / self.path.name
        memory = getattr(self, "memory", None)
        if memory is None:
            return written
        write_memory(memory, written, named=self.path)
        self.memory = None
        return written

    def _publish(self, written: Path, target: Path) -> None:
        os.chmod(written, default_mode())
        os.replace(written, target)

    def __enter__(self) -> StripWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if not self.committed:
            self.abort()


__all__ = ["StripWriter"]
