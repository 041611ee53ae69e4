"""``-o`` in object storage: where each output file goes, the manifest's object, and the lock object (see
:mod:`dualsr_deploy.infer.remote`)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dualsr_deploy.data.remote import Remote
from dualsr_deploy.errors import RemoteError, RunError
from dualsr_deploy.infer.manifest import MANIFEST_NAME, MergeReport, RunManifest, SceneRecord, merge_parts
from dualsr_deploy.infer.shards import Shard
from dualsr_deploy.infer.stac import ITEM_SUFFIX, write_catalog

LOCK_STALE_S = 600.0  # a lock object not refreshed for this long belongs to a run that died
HEARTBEAT_S = 60.0


class RemoteOutput:
    """``-o`` in object storage: where each file goes, the manifest's object and the lock object."""

    def __init__(self, url: str, shard: Shard | None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.remote = Remote.of(url)
        if self.remote.http:
            raise RunError(f"-o {url}: outputs go to object storage (s3://, gs://, az://) or a local folder, not HTTP")
        self.shard = shard
        self.manifest_name = shard.manifest_name if shard is not None else MANIFEST_NAME
        self.lock_url = self.url + (shard.lock_name if shard is not None else ".dualsr.lock")
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._sync = threading.Lock()

    def manifests(self) -> list[str]:
        """The manifest objects an earlier run left: the joined one, then the shards' parts (this run's last)."""
        joined = self.url + MANIFEST_NAME
        parts = sorted(self.remote.glob(self.url + "manifest.shard-*-of-*.jsonl"))
        own = self.url + self.manifest_name
        ordered = [joined, *(p for p in parts if p != own)] + ([own] if own != joined else [])
        if own == joined:
            ordered = [*parts, joined]
        return [url for url in ordered if self.remote.stat(url) is not None]

    def exists(self) -> bool:
        own = self.url + self.manifest_name
        joined = self.url + MANIFEST_NAME
        if self.shard is None:
            return bool(self.manifests())
        return any(self.remote.stat(url) is not None for url in {own, joined})

    def download_manifests(self, folder: Path) -> None:
        """The earlier manifests into ``folder``, under their own names (``RunManifest`` reads them there)."""
        for url in self.manifests():
            (folder / url.rsplit("/", 1)[1]).write_bytes(self.remote.read_bytes(url, 1 << 30))

    def upload_manifest(self, path: Path) -> None:
        with self._sync:
            self.remote.put(path, self.url + self.manifest_name)

    def upload(self, local: Path, out_local: Path) -> dict[str, Any]:
        return self.remote.put(local, self.url + local.relative_to(out_local).as_posix())

    @contextlib.contextmanager
    def locked(self, notes: list[str]) -> Iterator[None]:
        """Hold the lock object for the block (see the module docstring)."""
        if self.shard is None:
            fresh = [url for url in self.remote.glob(self.url + ".dualsr.shard-*.lock") if self._fresh(url)]
            if fresh:
                raise RunError(f"{self.url}: shard runs are writing here ({', '.join(fresh)}); wait for them")
        elif self._fresh(self.url + ".dualsr.lock"):
            raise RunError(f"{self.url}: a whole run (not a shard) is writing here ({self._holder(self.url)})")
        body = self._body()
        try:
            self.remote.write_bytes(self.lock_url, body, create=True)
        except FileExistsError:
            if self._fresh(self.lock_url):
                raise RunError(
                    f"{self.url}: another dualsr run is writing here ({self._holder_text(self.lock_url)}); wait for it "
                    f"to finish, or choose another -o (the lock is {self.lock_url})"
                ) from None
            notes.append(f"took over the lock of a run that ended without releasing it ({self.lock_url})")
            self.remote.write_bytes(self.lock_url, body)
        self._beat = threading.Thread(target=self._heartbeat, name="dualsr-lock", daemon=True)
        self._beat.start()
        try:
            yield
        finally:
            self._stop.set()
            self._beat.join(timeout=5)
            self.remote.remove(self.lock_url)

    def _body(self) -> bytes:
        return json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "beat": time.time(),
                "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300],
            }
        ).encode()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(RemoteError):
                info = json.loads(self.remote.read_bytes(self.lock_url, 1 << 16))
                info["beat"] = time.time()
                self.remote.write_bytes(self.lock_url, json.dumps(info).encode())

    def _read_lock(self, url: str) -> dict[str, Any]:
        try:
            data = json.loads(self.remote.read_bytes(url, 1 << 16))
        except (RemoteError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _fresh(self, url: str) -> bool:
        """Whether the lock object at ``url`` is held: refreshed in the last ten minutes by a process that, when it
        ran on this machine, is still alive (a run killed here frees its lock at once, as a local flock does)."""
        if self.remote.stat(url) is None:
            return False
        info = self._read_lock(url)
        beat, pid = info.get("beat"), info.get("pid")
        if info.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            return False
        return isinstance(beat, (int, float)) and time.time() - beat < LOCK_STALE_S

    def _holder(self, base: str) -> str:
        return self._holder_text(base + ".dualsr.lock")

    def _holder_text(self, url: str) -> str:
        info = self._read_lock(url)
        return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def objects_problem(objects: list[dict[str, Any]], remote: Remote, base: str) -> str | None:
    """Why uploaded outputs cannot be trusted any more (gone, another size, another ETag, or not under the output
    prefix ``base``: a manifest's claim about objects elsewhere is not believed), or None."""
    for item in objects:
        if not str(item.get("url", "")).startswith(base):
            return f"its record names an output outside {base} ({item.get('url')})"
        stat = remote.stat(str(item.get("url")))
        if stat is None:
            return f"its output {item.get('url')} is gone"
        if stat[0] != item.get("bytes") or (item.get("etag") and stat[1] != item.get("etag")):
            return f"its output {item.get('url')} changed since it was uploaded"
    return None


def catalog_hrefs(url: str, records: Iterable[SceneRecord]) -> list[str]:
    """The Items uploaded under ``url`` by ``ok`` records, as hrefs relative to it."""
    return [
        "./" + str(item["url"])[len(url) :]
        for record in records
        if record.status == "ok"
        for item in record.output_objects
        if str(item.get("url", "")).endswith(ITEM_SUFFIX) and str(item["url"]).startswith(url)
    ]


def merge_remote(url: str) -> MergeReport:
    """:func:`~dualsr_deploy.infer.manifest.merge_parts` for an output prefix in object storage: the parts and the
    joined manifest are downloaded, joined as a local folder's are, the joined manifest (and the run's STAC catalog,
    where Items were uploaded) uploaded, then the parts deleted. Holds the prefix's lock object throughout."""
    sink = RemoteOutput(url, None)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dualsr-merge-") as folder, sink.locked(notes):
        here = Path(folder)
        parts = sorted(sink.remote.glob(sink.url + "manifest.shard-*-of-*.jsonl"))
        for source in [sink.url + MANIFEST_NAME, *parts]:
            if sink.remote.stat(source) is not None:
                (here / source.rsplit("/", 1)[1]).write_bytes(sink.remote.read_bytes(source, 1 << 30))
        report = merge_parts(here)
        if report.parts:
            sink.remote.put(here / MANIFEST_NAME, sink.url + MANIFEST_NAME)
            for part in parts:
                sink.remote.remove(part)
        hrefs = catalog_hrefs(sink.url, RunManifest(here).completed().values())
        catalog = write_catalog(here, hrefs)
        report.catalog = None
        if catalog is not None:
            sink.remote.put(catalog, sink.url + catalog.name)
            report.catalog_url = sink.url + catalog.name
        report.manifest_url = sink.url + MANIFEST_NAME
        report.parts = [Path(part.rsplit("/", 1)[1]) for part in parts]
    return report


__all__ = ["HEARTBEAT_S", "LOCK_STALE_S", "RemoteOutput", "catalog_hrefs", "merge_remote", "objects_problem"]
