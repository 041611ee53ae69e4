"""Stopping a run cleanly: SIGINT and SIGTERM are honoured at the next batch boundary, so the resume file written
then continues exactly; a second Ctrl-C interrupts at once."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any


class StopRequest:
    """SIGINT/SIGTERM set a flag honoured at the next batch boundary; a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous.clear()
        try:
            yield self
        finally:
            for number, handler in self._previous.items():
                signal.signal(number, handler)
