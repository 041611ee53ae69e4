"""The run manifest: one JSON line per scene attempt in ``OUT/manifest.jsonl``, appended as each scene ends.

It is what ``--resume`` reads (a scene is done when its last record says ``ok``, its input hash is unchanged and
its output is still there) and what a person reads to see what happened to every scene.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dualsr_deploy.errors import DataError

if TYPE_CHECKING:
    from dualsr_deploy.data.archive import Archive, ArchiveEntry
    from dualsr_deploy.infer.shards import Shard

MANIFEST_NAME = "manifest.jsonl"


Status = Literal["ok", "failed", "interrupted"]


@dataclass
class SceneRecord:
    """One line of ``manifest.jsonl``: what happened to one scene in one attempt. Fields left empty are not
    written.

    - ``name``, ``input``: the scene's name in the archive and the file it was read from; ``status``: ``ok``,
      ``failed`` (``error`` says why) or ``interrupted``.
    - ``input_sha256``: one hash over every file the scene was read from (what ``--resume`` compares; for a remote
      scene read by range, over its object's key, size and ETag), and ``input_files`` those files (path relative to
      the archive root, bytes, SHA-256; a remote object's ETag); ``output``, ``output_bytes``,
      ``output_sha256``: the output written and its fingerprint; ``output_objects``: with ``-o s3://…``, the
      objects it was uploaded to (url, bytes, sha256, etag).
    - How it ran: ``backend`` (``backend-device-precision``), ``stage``, ``scale``, ``weights`` (the family or the
      checkpoint file), each ``*_choice`` saying why ``auto`` chose as it did; ``mode`` (``memory`` or
      ``streamed``), ``tiles`` (LR tiles planned, both models for ``dual``), ``worker`` (cluster runs).
    - What came out: ``shape_in``/``shape_out`` (bands, rows, columns), ``sam_weight`` (the fine stage's SAM
      weight), ``seconds`` (read, coarse, fine, write, total), ``notes`` (segments, filled pixels, clipped values,
      why a scene was redone), ``qa`` (output pixels per quality class with ``--qa``), ``consistency`` (the
      output brought back to the LR grid by bicubic and area degradation and compared with its input: PSNR, MAE,
      spectral angle mean and 99th percentile, worst band; and the detail it adds over bicubic).
    """

    name: str
    input: str
    status: Status
    input_sha256: str | None = None
    input_files: list[dict[str, Any]] = field(default_factory=list)  # every file read: path, bytes, sha256
    output: str | None = None
    output_bytes: int | None = None  # the output's size and SHA-256 when written (its data file too for ENVI), so
    output_sha256: str | None = None  # that --resume redoes a scene whose output went missing, was cut or changed
    # the objects an output was uploaded to (-o s3://…): url, bytes, sha256, etag (what --resume checks)
    output_objects: list[dict[str, Any]] = field(default_factory=list)
    backend: str | None = None  # label: backend-device-precision
    precision_choice: str | None = None  # why, when --precision auto chose the precision
    backend_choice: str | None = None  # why, when --backend auto chose the backend
    stage_choice: str | None = None  # why, when --stage auto chose the stage
    weights: str | None = None  # the shipped family (cave, airborne) or the checkpoint file the scene ran with
    weights_choice: str | None = None  # why, when --weights auto chose the family
    stage: str | None = None
    scale: int | None = None
    shape_in: list[int] | None = None
    shape_out: list[int] | None = None
    mode: str | None = None  # memory | streamed
    tiles: int = 0
    sam_weight: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    worker: str | None = None  # host:pid of the cluster worker that wrote it (cluster runs)
    qa: dict[str, int] | None = None  # output pixels per quality class (--qa): invalid, filled, clean
    # the output brought back to the LR grid and compared with its input (dualsr_deploy.infer.consistency)
    consistency: dict[str, Any] | None = None
    suspect: str | None = None  # why the output does not go back to its input (dualsr_deploy.infer.consistency)

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v not in (None, [], {})}, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneRecord:
        data = dict(data)
        if "engine" in data:  # manifests written before the field was called backend
            data.setdefault("backend", data.pop("engine"))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def output_files(output: Path) -> list[Path]:
    """The files that hold an output: ENVI's header and its data file, every file of a Zarr store (a folder), else
    the file itself."""
    from dualsr_deploy.data.formats import writing  # the package's table, not imported with the manifest

    try:
        return writing(output).content(output)
    except DataError:  # a record's output of a suffix no format writes (edited by hand): the path named
        return [output]


def output_fingerprint(output: Path) -> tuple[int, str]:
    """Total bytes and SHA-256 over :func:`output_files`, in order."""
    digest, total = hashlib.sha256(), 0
    for path in output_files(output):
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                total += len(block)
    return total, digest.hexdigest()


def fingerprint(record: SceneRecord) -> SceneRecord:
    """``record`` with its output's size and SHA-256 filled in (an ``ok`` record with an output)."""
    if record.status == "ok" and record.output:
        record.output_bytes, record.output_sha256 = output_fingerprint(Path(record.output))
    return record


def output_problem(record: SceneRecord) -> str | None:
    """Why an earlier ``ok`` record's output cannot be trusted any more (missing, cut short, changed), or None.
    Records written before outputs were fingerprinted are checked for existence only."""
    if not record.output:
        return "no output was recorded"
    files = output_files(Path(record.output))
    missing = [path.name for path in files if not path.is_file()] or ([] if Path(record.output).exists() else ["all"])
    if missing:
        return f"its output is missing ({', '.join(missing)})"
    if record.output_bytes is None or record.output_sha256 is None:
        return None
    size = sum(path.stat().st_size for path in files)
    if size != record.output_bytes:
        return f"its output is {size} bytes, {record.output_bytes} when written (cut short or overwritten)"
    if output_fingerprint(Path(record.output))[1] != record.output_sha256:
        return "its output changed since it was written (SHA-256 differs)"
    return None


def input_digest(path: Path, key: str | None = None) -> str:
    """SHA-256 over one input path's bytes (every file of a folder, in name order), and the key if any."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return files_digest(files, path if path.is_dir() else path.parent, key)[0]


def files_digest(files: Sequence[Path], root: Path, key: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """One SHA-256 over every file a scene was read from (its path relative to ``root``, its size and its own
    SHA-256, in the order given) and the key, and the per-file list (``path``, ``bytes``, ``sha256``) for the
    manifest: a changed data file, sidecar, mask granule or band image changes the scene's digest."""
    digest, listed = hashlib.sha256(), []
    for file in files:
        if file.is_dir():
            continue
        one, size = hashlib.sha256(), 0
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                one.update(block)
                size += len(block)
        name = _relative(file, root)
        digest.update(f"{name}\0{size}\0{one.hexdigest()}\0".encode())
        listed.append({"path": name, "bytes": size, "sha256": one.hexdigest()})
    if key is not None:
        digest.update(b"\0key\0" + key.encode())
    return digest.hexdigest(), listed


def scene_digest(archive: Archive, entry: ArchiveEntry) -> tuple[str, list[dict[str, Any]]]:
    """:func:`files_digest` over every file the scene's reader opens (opened for its list, not its pixels). A
    scene read by range from a remote object is fingerprinted by the object's key, size and ETag: the store's own
    digest, as ``--resume`` compares it, without reading it whole."""
    if entry.remote is not None:
        relative, size, etag = entry.remote
        digest = hashlib.sha256(f"{relative}\0{size}\0{etag}\0".encode())
        if entry.key is not None:
            digest.update(b"\0key\0" + entry.key.encode())
        return digest.hexdigest(), [{"path": relative, "bytes": size, "etag": etag}]
    with archive.open(entry) as reader:
        files = list(reader.files)
    return files_digest(files, archive.root, entry.key)


def _relative(path: Path, root: Path) -> str:
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return absolute.as_posix()


class RunManifest:
    """Append-only, thread-safe; each line flushed and fsynced so a killed run loses no finished scene.

    A shard's run (:mod:`dualsr_deploy.infer.shards`) appends to its own part, ``manifest.shard-I-of-N.jsonl``;
    :meth:`completed` reads every part of the folder and the joined ``manifest.jsonl``, this run's own file last, so
    that ``--resume`` skips a scene done under another sharding or by a whole run."""

    def __init__(self, folder: Path, shard: Shard | None = None) -> None:
        self.folder = folder
        self.path = folder / (shard.manifest_name if shard is not None else MANIFEST_NAME)
        self._lock = threading.Lock()

    def exists(self) -> bool:
        """Whether an earlier run left records this run would continue: its own file and the joined manifest, and
        for a whole run any shard's part too (not, for a shard, the other shards': they run beside it)."""
        joined = self.folder / MANIFEST_NAME
        mine = [*manifest_parts(self.folder), joined] if self.path == joined else [joined, self.path]
        return any(path.is_file() and path.stat().st_size > 0 for path in mine)

    def _earlier(self) -> list[Path]:
        joined = self.folder / MANIFEST_NAME
        parts = manifest_parts(self.folder)
        if self.path == joined:
            return [*parts, joined]
        return [joined, *(p for p in parts if p != self.path), self.path]

    def records(self) -> list[SceneRecord]:
        """Every record of this run's own file (see :func:`read_records`)."""
        return read_records(self.path)

    def completed(self) -> dict[str, SceneRecord]:
        """The last record of each scene whose last record is ``ok``, over every manifest of the folder."""
        last: dict[str, SceneRecord] = {}
        for path in self._earlier():
            for record in read_records(path):
                last[record.name] = record
        return {name: record for name, record in last.items() if record.status == "ok"}

    def append(self, record: SceneRecord) -> None:
        """Append ``record``; its output is written relative to the manifest's folder when it lies inside it."""
        stored = record
        if record.output:
            output = Path(os.path.abspath(record.output))
            folder = Path(os.path.abspath(self.path.parent))
            if output.is_relative_to(folder):
                stored = dataclasses.replace(record, output=output.relative_to(folder).as_posix())
        line = stored.to_json() + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file() and self.path.stat().st_size:
                with self.path.open("rb") as tail:
                    tail.seek(-1, os.SEEK_END)
                    if tail.read(1) != b"\n":  # a line cut short by a killed run: start a fresh one
                        line = "\n" + line
            with self.path.open("a") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())


def read_records(path: Path) -> list[SceneRecord]:
    """Every record of one manifest file, outputs as paths again (written relative to the manifest's folder, so
    that a moved or copied output folder checks its own files); a line cut short by a killed run is passed over."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = SceneRecord.from_dict(json.loads(line))
        except (json.JSONDecodeError, TypeError, AttributeError):
            continue
        if record.output and not Path(record.output).is_absolute():
            record.output = str(path.parent / record.output)
        out.append(record)
    return out


def manifest_parts(folder: Path) -> list[Path]:
    """The shards' manifest parts in ``folder``, by count, then index."""
    from dualsr_deploy.infer.shards import PART_PATTERN

    found = []
    for path in folder.glob("manifest.shard-*-of-*.jsonl"):
        match = PART_PATTERN.match(path.name)
        if match and path.is_file():
            found.append((int(match[2]), int(match[1]), path))
    return [path for _count, _index, path in sorted(found)]


@dataclass
class MergeReport:
    """What :func:`merge_parts` did: the parts joined, the records and scenes now in ``manifest.jsonl``, the lines
    passed over (cut short by a killed run), and for each shard count the shards that left no part."""

    manifest: Path
    parts: list[Path] = field(default_factory=list)
    records: int = 0
    scenes: int = 0
    ok: int = 0
    failed: int = 0
    cut_lines: int = 0
    missing: dict[int, list[int]] = field(default_factory=dict)  # count → 1-based indices without a part
    twice: list[str] = field(default_factory=list)  # scenes written ok by more than one shard
    catalog: Path | None = None  # the run's STAC catalog, written where the shards wrote Items (--stac)
    catalog_url: str | None = None  # the same, uploaded (an output prefix in object storage)
    manifest_url: str | None = None  # the joined manifest, uploaded (an output prefix in object storage)


def merge_parts(folder: Path) -> MergeReport:
    """Join the shards' manifest parts of ``folder`` onto ``manifest.jsonl`` (its earlier lines first, then the
    parts by count and index), written atomically, then remove the parts. Holds the folder's lock throughout, so
    it waits for no shard: a shard still running makes it a :class:`~dualsr_deploy.errors.RunError`."""
    from dualsr_deploy.atomic import atomic_output
    from dualsr_deploy.infer.lock import output_lock
    from dualsr_deploy.infer.shards import PART_PATTERN

    target = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise DataError(f"{folder}: no such output folder")
    report = MergeReport(target)
    with output_lock(folder):
        report.parts = manifest_parts(folder)
        lines: list[str] = []
        for path in [target, *report.parts]:
            if not path.is_file():
                continue
            for line in path.read_text().splitlines():
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    report.cut_lines += line.strip() != ""
                    continue
                lines.append(line)
        seen: dict[int, set[int]] = {}
        for path in report.parts:
            match = PART_PATTERN.match(path.name)
            assert match is not None
            seen.setdefault(int(match[2]), set()).add(int(match[1]))
        report.missing = {n: [i for i in range(1, n + 1) if i not in got] for n, got in seen.items()}
        report.missing = {n: gone for n, gone in report.missing.items() if gone}
        oks: dict[str, set[str]] = {}
        for path in report.parts:
            for record in read_records(path):
                if record.status == "ok":
                    oks.setdefault(record.name, set()).add(path.name)
        report.twice = sorted(name for name, where in oks.items() if len(where) > 1)
        if report.parts:
            with atomic_output(target) as tmp:
                tmp.write_text("".join(line + "\n" for line in lines))
            for path in report.parts:
                path.unlink()
        for lock in folder.glob(".dualsr.shard-*-of-*.lock"):  # no shard runs (the folder's lock is ours)
            with contextlib.suppress(OSError):
                if lock.is_file() and lock.stat().st_size == 0:
                    lock.unlink()
        from dualsr_deploy.infer.stac import item_links, write_catalog

        report.catalog = write_catalog(folder, item_links(folder, RunManifest(folder).completed().values()))
        last: dict[str, str] = {}
        for record in read_records(target):
            last[record.name] = record.status
        report.records, report.scenes = len(lines), len(last)
        report.ok = sum(status == "ok" for status in last.values())
        report.failed = sum(status == "failed" for status in last.values())
    return report
