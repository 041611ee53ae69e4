"""One run per output folder: an advisory lock (``fcntl.flock``) on ``OUT/.dualsr.lock``, held for the whole run.

The lock file names its holder (pid, host, start time, command) so a second run can say who has the folder. The
kernel releases a ``flock`` when its process dies, so a run killed with SIGKILL leaves no lock behind: its file
stays, and the next run takes the lock over and says so. Advisory only: it keeps ``dualsr`` runs apart, not other
programs. On file systems without ``flock`` (some network mounts) the lock is skipped with a note. The shards of one
array job (:mod:`dualsr_deploy.infer.shards`) share the folder, each holding a lock of its own.
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
from dualsr_deploy.infer.shards import Shard

LOCK_NAME = ".dualsr.lock"


def _holder_text(info: dict[str, object]) -> str:
    return (
        f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"
        f" ({info.get('command', '')})"
    ).replace(" ()", "")


@contextlib.contextmanager
def output_lock(out: Path, notes: list[str] | None = None, shard: Shard | None = None) -> Iterator[None]:
    """Hold ``out``'s lock for the ``with`` block; a :class:`RunError` naming the holder if another run has it.
    ``notes`` receives a line when a stale lock (of a run that died) was taken over.

    With ``shard``, the folder's lock is held shared and the shard's own (``.dualsr.shard-I-of-N.lock``) exclusive:
    the shards of one array job write side by side, while a whole run (or ``dualsr manifest merge``) waits for
    none of them to be running, and one shard never runs twice at once."""
    import fcntl

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"{out}: cannot write in the output folder ({error.strerror}); choose another -o") from None
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(_open_lock(out / LOCK_NAME, out))
        if shard is None:
            held = _take(folder, fcntl.LOCK_EX, out / LOCK_NAME, notes)
            if held is False:
                raise RunError(
                    f"{out}: another dualsr run is writing to this folder ({_holders(out)}); wait for it "
                    f"to finish, or choose another -o (the lock is {out / LOCK_NAME})"
                )
            if held:
                stack.enter_context(_holding(folder, out / LOCK_NAME, notes))
            yield
            return
        if _take(folder, fcntl.LOCK_SH, out / LOCK_NAME, notes) is False:
            raise RunError(
                f"{out}: a whole run (not a shard) or a manifest merge is writing to this folder "
                f"({_holder_text(_read(out / LOCK_NAME))}); wait for it to finish, or choose another -o"
            )
        own_path = out / shard.lock_name
        own = stack.enter_context(_open_lock(own_path, out))
        held = _take(own, fcntl.LOCK_EX, own_path, notes)
        if held is False:
            raise RunError(
                f"{out}: shard {shard.text} is running already in this folder ({_holder_text(_read(own_path))})"
            )
        if held:
            stack.enter_context(_holding(own, own_path, notes))
        yield


@contextlib.contextmanager
def _open_lock(path: Path, out: Path) -> Iterator[IO[str]]:
    try:
        handle: IO[str] = path.open("a+")
    except OSError as error:
        raise RunError(f"{out}: cannot write in the output folder ({error.strerror}); choose another -o") from None
    with handle:
        yield handle


def _take(handle: IO[str], mode: int, path: Path, notes: list[str] | None) -> bool | None:
    """True: locked; False: held by another run; None: this file system has no locks (a note says so)."""
    import fcntl

    try:
        fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if notes is not None:
            notes.append(f"{path}: this file system has no locks ({error.strerror}); runs are not kept apart")
        return None
    return True


@contextlib.contextmanager
def _holding(handle: IO[str], path: Path, notes: list[str] | None) -> Iterator[None]:
    """Write who holds the (exclusive) lock into its file for the block; empty it and unlock after."""
    import fcntl

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


def _holders(out: Path) -> str:
    """Who holds the folder: the whole run's holder, else the shards' (which write their own lock files)."""
    whole = _read(out / LOCK_NAME)
    if whole:
        return _holder_text(whole)
    shards = [(p.name, _read(p)) for p in sorted(out.glob(".dualsr.shard-*.lock"))]
    running = [f"{name[len('.dualsr.') : -len('.lock')]}: {_holder_text(info)}" for name, info in shards if info]
    return "shard runs: " + "; ".join(running) if running else _holder_text({})


def _read(path: Path) -> dict[str, object]:
    try:
        text = path.read_text().strip()
        return dict(json.loads(text)) if text else {}
    except (OSError, ValueError, TypeError):
        return {}


__all__ = ["LOCK_NAME", "output_lock"]
