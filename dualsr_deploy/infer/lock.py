"""One run per output folder: an advisory lock (``fcntl.flock``) on ``OUT/.dualsr.lock``, held for the whole run.

The lock file names its holder (pid, host, start time, command) so a second run can say who has the folder. The
kernel releases a ``flock`` when its process dies, so a run killed with SIGKILL leaves no lock behind: its file
stays, and the next run takes the lock over and says so. Advisory only: it keeps ``dualsr`` runs apart, not other
programs. On file systems without ``flock`` (some network mounts) the lock is skipped with a note.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from dualsr_deploy.errors import RunError

LOCK_NAME = ".dualsr.lock"


def _holder_text(info: dict[str, object]) -> str:
    return (
        f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"
        f" ({info.get('command', '')})"
    ).replace(" ()", "")


@contextlib.contextmanager
def output_lock(out: Path, notes: list[str] | None = None) -> Iterator[None]:
    """Hold ``out``'s lock for the ``with`` block; a :class:`RunError` naming the holder if another run has it.
    ``notes`` receives a line when a stale lock (of a run that died) was taken over."""
    import fcntl

    path = out / LOCK_NAME
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = path.open("a+")
    except OSError as error:
        raise RunError(f"{out}: cannot write in the output folder ({error.strerror}); choose another -o") from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunError(
                    f"{out}: another dualsr run is writing to this folder ({_holder_text(_read(path))}); wait for it "
                    f"to finish, or choose another -o (the lock is {path})"
                ) from None
            if notes is not None:
                notes.append(f"{path}: this file system has no locks ({error.strerror}); runs are not kept apart")
            yield
            return
        previous = _read(path)
        if previous and notes is not None:
            notes.append(f"took over the lock of a run that ended without releasing it ({_holder_text(previous)})")
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300],
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(info))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def _read(path: Path) -> dict[str, object]:
    try:
        text = path.read_text().strip()
        return dict(json.loads(text)) if text else {}
    except (OSError, ValueError, TypeError):
        return {}


__all__ = ["LOCK_NAME", "output_lock"]
