"""Atomic file output: write under a temporary name in the target folder, rename on success, remove on failure."""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".dualsr-"  # in every temporary name this package makes: --resume removes only what carries it
TEMP_SUFFIX = ".tmp"
_NAME_ROOM = 96  # bytes of the target's name kept in a temporary name (file names stop at 255 bytes)


def temp_prefix(name: str) -> str:
    """The start of a temporary name for a file or folder about to become ``name``: ``.<name, shortened>.dualsr-``
    (then mkstemp's random part and :data:`TEMP_SUFFIX`). A long name is cut at a character boundary, so the
    temporary name stays under the file-name limit whatever the output is called."""
    short = name.encode()[:_NAME_ROOM].decode(errors="ignore")
    return f".{short}{TEMP_MARK}"


def temp_pattern(name: str) -> str:
    """The glob that finds the temporary files and folders of ``name``."""
    return f"{_glob_escape(temp_prefix(name))}*{TEMP_SUFFIX}"


STALE_PATTERN = f".*{TEMP_MARK}*{TEMP_SUFFIX}"  # any temporary name this package made


def _glob_escape(text: str) -> str:
    import glob

    return glob.escape(text)


def default_mode() -> int:
    """The mode a new file gets here: 0o666 less the umask (temporary files are made 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it replaces ``path`` (with the usual file mode).

    An exception (or an interrupted process) never leaves a partial file under the final name.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target.name), suffix=TEMP_SUFFIX)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, default_mode())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def free_bytes(folder: Path) -> int:
    """Free bytes on ``folder``'s file system (for this user); a folder not made yet counts as its nearest
    existing parent."""
    folder = Path(folder)
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def no_space(path: Path, needed: int) -> OSError:
    """The ENOSPC error for ``needed`` bytes that do not fit beside ``path``, naming the free space."""
    free = free_bytes(path.parent)
    return OSError(
        errno.ENOSPC, f"no space left on the device: {needed / 2**20:.1f} MiB to write, {free / 2**20:.1f} MiB free"
    )


def write_memory(buffer: io.BytesIO, destination: Path, *, named: Path) -> None:
    """Write an in-memory file to ``destination`` and sync it: the space is checked first, and a disk that fills
    anyway raises ENOSPC naming ``named`` (the file the user asked for) and the free space."""
    size = buffer.getbuffer().nbytes
    if size > free_bytes(destination.parent):
        raise no_space(named, size)
    with destination.open("wb") as handle:
        try:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise no_space(named, size) from None
            raise


@contextmanager
def atomic_hdf5(path: str | os.PathLike[str]) -> Iterator[io.BytesIO]:
    """An in-memory file for h5py or h5netcdf, written to ``path`` atomically once the ``with`` block (where the
    HDF5 file must be opened and closed) ends. HDF5's C library can crash the whole process when the disk fills
    under its own writes; here it only ever writes to memory, and the one write to disk is Python's, which raises
    :class:`OSError` (ENOSPC, naming the free space) and leaves no partial file."""
    buffer = io.BytesIO()
    yield buffer
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        write_memory(buffer, tmp, named=target)
