"""The run manifest: one JSON line per scene attempt in ``OUT/manifest.jsonl``, appended as each scene ends.

It is what ``--resume`` reads (a scene is done when its last record says ``ok``, its input hash is unchanged and
its output is still there) and what a person reads to see what happened to every scene.
"""

from __future__ import annotations

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

MANIFEST_NAME = "manifest.jsonl"


Status = Literal["ok", "failed", "interrupted"]


@dataclass
class SceneRecord:
    """One line of ``manifest.jsonl``: what happened to one scene in one attempt. Fields left empty are not
    written.

    - ``name``, ``input``: the scene's name in the archive and the file it was read from; ``status``: ``ok``,
      ``failed`` (``error`` says why) or ``interrupted``.
    - ``input_sha256``: one hash over every file the scene was read from (what ``--resume`` compares), and
      ``input_files`` those files (path relative to the archive root, bytes, SHA-256); ``output``, ``output_bytes``,
      ``output_sha256``: the output written and its fingerprint.
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
    backend: str | None = None  # label: backend-device-precision
    precision_choice: str | None = None  # why, when --precision auto chose the precision
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
    """:func:`files_digest` over every file the scene's reader opens (opened for its list, not its pixels)."""
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
    """Append-only, thread-safe; each line flushed and fsynced so a killed run loses no finished scene."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST_NAME
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self.path.is_file() and self.path.stat().st_size > 0

    def records(self) -> list[SceneRecord]:
        """Every record, outputs as paths again (written relative to the manifest's folder, so that a moved or
        copied output folder checks its own files)."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                record = SceneRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError, AttributeError):
                continue  # a line cut short by a killed run
            if record.output and not Path(record.output).is_absolute():
                record.output = str(self.path.parent / record.output)
            out.append(record)
        return out

    def completed(self) -> dict[str, SceneRecord]:
        """The last record of each scene whose last record is ``ok``."""
        last: dict[str, SceneRecord] = {}
        for record in self.records():
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
