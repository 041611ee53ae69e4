"""Planning a run: what happens to each scene of an archive (run in memory, run streamed, skip as done, or fail
with the reason) and where its output goes, decided before anything is computed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dualsr_deploy.data.archive import Archive, ArchiveEntry
from dualsr_deploy.data.formats import output_suffix as suffix_for
from dualsr_deploy.data.formats import writing
from dualsr_deploy.errors import DualSRError
from dualsr_deploy.infer.manifest import RunManifest, output_problem, scene_digest
from dualsr_deploy.infer.options import AUTO_TILE, InferOptions
from dualsr_deploy.infer.tiling import TileGrid
from dualsr_deploy.weights import FamilyChoice

Action = Literal["run", "skip", "fail"]
Mode = Literal["memory", "streamed"]  # held whole, or computed in strips


@dataclass(frozen=True)
class PlannedScene:
    """What a run will do with one scene of the archive, decided before anything is computed.

    - ``entry``: the scene as probed (name, path, shape, dtype, wavelengths); ``action``: ``run``, ``skip`` (done in
      an earlier run: ``--resume``) or ``fail`` (``reason`` says why: unreadable, an output that would overwrite an
      input or leave the folder, no disk space).
    - ``output``: where its result goes; ``mode``: ``memory`` (held whole) or ``streamed`` (over the memory
      budget: computed in strips); ``tiles``: LR tiles it takes (both models for ``dual``), for progress.
    - ``reason``: for a scene that runs, a note kept in its record (e.g. why ``--resume`` redoes it);
      ``digest``: one SHA-256 over every file it is read from, once hashed (``input_files``: those files);
      ``weights``: what ``--weights auto`` chose for it.
    """

    entry: ArchiveEntry
    action: Action
    output: Path | None = None
    mode: Mode = "memory"
    tiles: int = 0
    reason: str | None = None
    digest: str | None = None
    input_files: tuple[dict[str, Any], ...] = ()  # every file the scene is read from, once hashed
    weights: FamilyChoice | None = None  # what --weights auto chose for this scene (None: the run's weights)


def bytes_needed(entry: ArchiveEntry, options: InferOptions, streamed: bool) -> int:
    """Disk bytes a scene takes: its output (in the source's dtype, or float32), and for a streamed scene the
    on-disk intermediates (the ×s and ×s/2 coarse results, float32) and a float32 output."""
    assert entry.shape is not None
    c, h, w = entry.shape
    hr = c * h * w * options.scale * options.scale
    if not streamed:
        itemsize = np.dtype(entry.dtype or "float32").itemsize if options.units == "source" else 4
        return hr * max(itemsize, 1)
    half = c * h * w * (options.scale // 2) ** 2 if options.stage == "dual" else 0
    return 4 * (2 * hr + half) if options.stage != "coarse" else 4 * hr


def free_bytes(folder: Path) -> int:
    """Free bytes on the filesystem of ``folder`` (or of its nearest existing parent)."""
    path = folder.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def space_problem(entry: ArchiveEntry, options: InferOptions, streamed: bool, folder: Path) -> str | None:
    """Why the scene cannot fit the free space of ``folder`` now, with the numbers; None when it fits."""
    needed, free = bytes_needed(entry, options, streamed), free_bytes(folder)
    if needed <= free:
        return None
    return (
        f"needs ~{size_text(needed)} on disk ({'output and intermediates' if streamed else 'output'}), and "
        f"{folder} has {size_text(free)} free; free some space or choose another -o"
    )


def size_text(count: int) -> str:
    """``393.2 KiB``, ``1.50 GiB``: bytes for people."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.2f} TiB"


def output_suffix(entry: ArchiveEntry, options: InferOptions) -> str:
    """The suffix ``entry``'s output is written in: ``--format``'s, else its input format's (the format table)."""
    return suffix_for(entry.format, options.format)


def written_files(output: Path, qa: bool, reference: bool = False) -> list[Path]:
    """Every file a scene whose output is ``output`` writes: ENVI's header, data file and sidecar, a ``.npy``'s
    metadata sidecar, with ``qa`` the quality layer's own files and with ``reference`` the bicubic reference's;
    claimed at plan time, so that no scene's file overwrites another's."""
    from dualsr_deploy.infer.quality import qa_path
    from dualsr_deploy.infer.reference import reference_path

    def of(path: Path) -> list[Path]:
        return writing(path).files(path)

    return of(output) + (of(qa_path(output)) if qa else []) + (of(reference_path(output)) if reference else [])


def remove_outputs(output: Path) -> None:
    """The files of one written output (its data file and sidecars too: :func:`~dualsr_deploy.infer.plan
    .written_files`), removed after a later write of its scene failed: an output is not left beside a ``failed``
    record."""
    folder = writing(output).folder
    for path in written_files(output, False):
        if folder and path == output and path.is_dir() and not path.is_symlink():  # a store written as a folder
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() or path.is_symlink():  # never a folder (other scenes' outputs may live in one)
            path.unlink()


def _normal(path: Path) -> Path:
    return Path(os.path.normpath(os.path.abspath(path)))


def inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def plan_archive(
    archive: Archive,
    out_dir: Path,
    options: InferOptions,
    *,
    hashes: bool,
    count_tiles: Callable[[tuple[int, int, int], bool], int] | None = None,
) -> list[PlannedScene]:
    """What a run would do with each scene. ``hashes``: hash every input now to decide ``resume`` skips (the dry
    run); a real run leaves hashing, and so the skip decision, to its reader, overlapped with compute.
    ``count_tiles(shape, streamed)``: the tiles a scene runs, as the run will lay them (its tile sizes depend on the
    model and the budget); without it, square tiles of ``--tile`` or :data:`AUTO_TILE`."""
    done = RunManifest(out_dir, options.shard).completed() if options.resume else {}
    inputs = {entry.path.resolve() for entry in archive.entries}
    outputs: dict[Path, str] = {}  # every file a planned scene will write (normalised) → the scene
    plan: list[PlannedScene] = []
    for entry in archive.entries:
        planned = _plan_one(entry, out_dir, options, inputs, outputs, count_tiles)
        if planned.action == "run":
            digest, files = _digest(archive, entry) if hashes else (None, [])
            previous = done.get(entry.name)
            assert planned.output is not None
            if (
                previous is not None
                and previous.input_sha256 == digest
                and planned.output.exists()
                and output_problem(previous) is None
            ):
                planned = PlannedScene(
                    entry,
                    "skip",
                    planned.output,
                    reason="done in an earlier run",
                    digest=digest,
                    input_files=tuple(files),
                )
            else:
                planned = PlannedScene(
                    entry,
                    "run",
                    planned.output,
                    planned.mode,
                    planned.tiles,
                    planned.reason,
                    digest,
                    tuple(files),
                    weights=options.choose_weights(entry.shape[0], entry.wavelengths) if entry.shape else None,
                )
        plan.append(planned)
    return plan


def _digest(archive: Archive, entry: ArchiveEntry) -> tuple[str | None, list[dict[str, Any]]]:
    try:
        return scene_digest(archive, entry)
    except (DualSRError, OSError):  # the run's reader says why; a dry run shows the scene as one to run
        return None, []


def _plan_one(
    entry: ArchiveEntry,
    out_dir: Path,
    options: InferOptions,
    inputs: set[Path],
    outputs: dict[Path, str],
    count_tiles: Callable[[tuple[int, int, int], bool], int] | None,
) -> PlannedScene:
    if entry.error is not None or entry.shape is None:
        return PlannedScene(entry, "fail", reason=entry.error or "unreadable")
    _c, h, w = entry.shape
    suffix = output_suffix(entry, options)
    row = writing(Path(f"scene{suffix}"))
    if row.sources is not None and entry.format not in row.sources:  # found now, not after the scene is computed
        return PlannedScene(
            entry,
            "fail",
            reason=f"--format {row.option}: {row.needs}, and this is a {entry.format} scene; choose another --format",
        )
    streamed = options.streams(entry.shape)
    note = None
    if streamed:
        note = row.streamed_note
    output = out_dir / f"{entry.name}{suffix}"
    claims = [_normal(path) for path in written_files(output, options.qa, options.reference is not None)]
    problem = None
    if not inside(output, out_dir):
        problem = f"{output}: the output would leave the output folder"
    for claim in claims:
        if problem is not None:
            break
        if claim.resolve() in inputs:
            problem = f"{claim}: the output would overwrite an input"
        elif claim in outputs:
            problem = f"{claim}: scene {outputs[claim]!r} writes a file of this name already"
    if problem is not None:
        return PlannedScene(entry, "fail", output=output, reason=problem)
    outputs.update(dict.fromkeys(claims, entry.name))
    done_before = options.resume and output.exists()  # its space is taken already; the reader decides
    problem = None if done_before else space_problem(entry, options, streamed, out_dir)
    if problem is not None:  # never started, so never holding up the scenes behind it
        return PlannedScene(entry, "fail", output=output, reason=problem)
    if count_tiles is not None:
        tiles = count_tiles(entry.shape, streamed)
    else:
        tiles = len(TileGrid(h, w, options.tile or AUTO_TILE, 0)) * (2 if options.stage == "dual" else 1)
    return PlannedScene(entry, "run", output, "streamed" if streamed else "memory", tiles, reason=note)


__all__ = [
    "PlannedScene",
    "bytes_needed",
    "free_bytes",
    "inside",
    "output_suffix",
    "plan_archive",
    "remove_outputs",
    "space_problem",
]
