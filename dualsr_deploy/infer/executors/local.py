"""The local executor: every scene in this process, with reading, compute and writing overlapped.

- A reader thread hashes (for ``resume``) and loads the next scenes while the backends run; a writer thread
  writes finished scenes while the next ones compute. Both queues are bounded, so memory stays bounded.
- Consecutive in-memory scenes with the same band count and tile windows are batched together, up to a batch of
  tiles.
- Ctrl-C (or SIGTERM) finishes the scenes in hand and stops; a second Ctrl-C abandons them.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

from dualsr_deploy.errors import RUN_ERRORS, SCENE_ERRORS
from dualsr_deploy.infer.context import SceneContext
from dualsr_deploy.infer.executors.base import Job, Outcome
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.options import Event
from dualsr_deploy.infer.pipeline import LoadedScene, Result, compute, load_scene, streamed, write_result

QUEUE_DEPTH = 2  # scenes read ahead, and results waiting to be written


class LocalExecutor:
    def __init__(self, ctx: SceneContext) -> None:
        self.ctx = ctx

    def run(self, job: Job) -> Outcome:
        return _LocalRun(self.ctx, job).run()


class _LocalRun:
    def __init__(self, ctx: SceneContext, job: Job) -> None:
        self.ctx = ctx
        self.job = job
        self.options = job.options
        self.outcome = Outcome()
        self._halt = threading.Event()
        self.loaded: queue.Queue[LoadedScene | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.written: queue.Queue[Result | None] = queue.Queue(maxsize=QUEUE_DEPTH)

    def run(self) -> Outcome:
        reader = threading.Thread(target=self._read, name="dualsr-reader", daemon=True)
        writer = threading.Thread(target=self._write, name="dualsr-writer", daemon=True)
        reader.start()
        writer.start()
        try:
            for item in self._items():
                self._process(item)
                if self.job.stop.requested:
                    self.outcome.interrupted = True
                    break
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        finally:
            self._halt.set()
            self.written.put(None)
            writer.join()
            reader.join(timeout=5)
            self.outcome.backends = self.ctx.opened
        return self.outcome

    # reader thread: loads in-memory scenes ahead of the backends (streamed ones are read in strips later)
    def _read(self) -> None:
        done = 0
        try:
            for planned in self.job.todo:
                if self._halt.is_set():
                    break
                item = load_scene(self.ctx, planned, self.job.previous(planned))
                while not self._halt.is_set():
                    try:
                        self.loaded.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                done += 1
        except BaseException as exc:  # load_scene keeps a scene's failure its own; this is the thread itself
            why = f"the reader thread stopped ({type(exc).__name__}: {exc})"
            self.outcome.broken.append(why)
            for planned in self.job.todo[done:]:
                self._finish_quietly(self.ctx.record(planned, "failed", error=f"not read: {why}"))
        finally:
            self._put_end(self.loaded)

    def _finish_quietly(self, record: SceneRecord) -> None:
        try:
            self.job.finish(record)
        except Exception as exc:
            self.outcome.broken.append(f"{record.name}: its record could not be written ({type(exc).__name__}: {exc})")

    def _put_end(self, q: queue.Queue[Any]) -> None:
        while True:
            try:
                q.put(None, timeout=0.2)
                return
            except queue.Full:
                if self._halt.is_set():
                    with contextlib.suppress(queue.Empty):
                        q.get_nowait()

    # writer thread: writes finished in-memory scenes atomically, then records them
    def _write(self) -> None:
        """Writes and records each result; one that cannot be recorded is named in ``outcome.broken`` and the
        thread goes on taking results (a writer that stopped would leave the compute thread waiting forever)."""
        while True:
            result = self.written.get()
            if result is None:
                return
            try:
                self.job.finish(write_result(result))
            except Exception as exc:
                self.outcome.broken.append(
                    f"{result.record.name}: written, but not recorded ({type(exc).__name__}: {exc})"
                )

    def _items(self) -> Iterator[LoadedScene]:
        """Loaded scenes in order, one at a time: a scene's tiles are batched with its own tiles only, so that its
        output never depends on which other scenes the reader thread had loaded (fp32 runs are bit-identical across
        runs, machine load, ``--resume`` and executors; a tile computed in another batch differs by up to ~2e-7)."""
        while True:
            item = self.loaded.get()
            if item is None:
                return
            yield item
            if self.job.stop.requested:
                return

    def _process(self, item: LoadedScene) -> None:
        report, finish = self.job.report, self.job.finish
        if item.skip:
            self.outcome.resumed.append(item.planned)
            report(Event("skip", item.planned.entry.name, count=item.planned.tiles))
            return
        if item.fatal is not None:
            raise item.fatal
        report(Event("scene", item.planned.entry.name, total=item.planned.tiles))
        if item.error is not None:
            finish(self.ctx.record(item.planned, "failed", error=item.error))
            return
        try:
            if item.planned.mode == "streamed":
                finish(streamed(self.ctx, item.planned))
            else:
                self.written.put(compute(self.ctx, item))
        except KeyboardInterrupt:
            finish(self.ctx.record(item.planned, "interrupted", error="abandoned by a second Ctrl-C"))
            raise
        except RUN_ERRORS:  # the same for every scene (a missing extra, weights an artefact was not made from)
            raise
        except SCENE_ERRORS as exc:
            finish(self.ctx.record(item.planned, "failed", error=f"{type(exc).__name__}: {exc}"))


__all__ = ["LocalExecutor"]
