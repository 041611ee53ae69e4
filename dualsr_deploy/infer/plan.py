"""Planning a run: what happens to each scene of an archive (run in memory, run streamed, skip as done, or fail
with the reason) and where its output goes, decided before anything is computed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dualsr_deploy.data.archive import Archive, ArchiveEntry
from dualsr_deploy.data.chunked import CHUNKED_SUFFIXES
from dualsr_deploy.infer.manifest import RunManifest, input_digest
from dualsr_deploy.infer.options import AUTO_TILE, FORMATS, InferOptions
from dualsr_deploy.infer.tiling import TileGrid

# The output suffix of each input format when no --format is given (CAVE folders become HDF5).
LIKE_INPUT = {
    "hdf5": ".h5",
    "mat-v7.3": ".mat",
    "mat-v5": ".mat",
    "npy": ".npy",
    "npz": ".npy",
    "tiff": ".tif",
    "geotiff": ".tif",
    "envi": ".hdr",
    "cave": ".h5",
}


@dataclass(frozen=True)
class PlannedScene:
    entry: ArchiveEntry
    action: str  # run | skip | fail
    output: Path | None = None
    mode: str = "memory"  # memory | streamed
    tiles: int = 0
    reason: str | None = None
    digest: str | None = None


def output_suffix(entry: ArchiveEntry, options: InferOptions) -> str:
    if options.format is not None:
        return FORMATS[options.format]
    return LIKE_INPUT.get(entry.format or "", ".h5")


def inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def plan_archive(archive: Archive, out_dir: Path, options: InferOptions, *, hashes: bool) -> list[PlannedScene]:
    """What a run would do with each scene. ``hashes``: hash every input now to decide ``resume`` skips (the dry
    run); a real run leaves hashing, and so the skip decision, to its reader, overlapped with compute."""
    done = RunManifest(out_dir).completed() if options.resume else {}
    inputs = {entry.path.resolve() for entry in archive.entries}
    outputs: set[Path] = set()
    plan: list[PlannedScene] = []
    for entry in archive.entries:
        planned = _plan_one(entry, out_dir, options, inputs, outputs)
        if planned.action == "run":
            digest = input_digest(entry.path, entry.key) if hashes else None
            previous = done.get(entry.name)
            assert planned.output is not None
            if previous is not None and previous.input_sha256 == digest and planned.output.is_file():
                planned = PlannedScene(entry, "skip", planned.output, reason="done in an earlier run", digest=digest)
            else:
                planned = PlannedScene(
                    entry, "run", planned.output, planned.mode, planned.tiles, planned.reason, digest
                )
        plan.append(planned)
    return plan


def _plan_one(
    entry: ArchiveEntry, out_dir: Path, options: InferOptions, inputs: set[Path], outputs: set[Path]
) -> PlannedScene:
    if entry.error is not None or entry.shape is None:
        return PlannedScene(entry, "fail", reason=entry.error or "unreadable")
    _c, h, w = entry.shape
    suffix = output_suffix(entry, options)
    streamed = options.working_bytes(entry.shape) > options.budget
    note = None
    if streamed and suffix not in CHUNKED_SUFFIXES:
        if options.format is not None:
            return PlannedScene(
                entry,
                "fail",
                reason=f"the scene needs ~{options.working_bytes(entry.shape) / 2**30:.1f} GiB whole, over the "
                f"memory budget, and is streamed, which --format {options.format} cannot take; use --format h5 or "
                "npy (or raise --memory-budget)",
            )
        note = f"streamed, so written as .h5 ({suffix} cannot be written in strips)"
        suffix = ".h5"
    output = out_dir / f"{entry.name}{suffix}"
    if not inside(output, out_dir) or output.resolve() in inputs or output in outputs:
        why = (
            "would overwrite an input"
            if output.resolve() in inputs
            else "would leave the output folder"
            if not inside(output, out_dir)
            else "has the same output name as another scene"
        )
        return PlannedScene(entry, "fail", output=output, reason=f"{output}: the output {why}")
    outputs.add(output)
    tiles = len(TileGrid(h, w, options.tile or AUTO_TILE, 0)) * (2 if options.stage == "dual" else 1)
    return PlannedScene(entry, "run", output, "streamed" if streamed else "memory", tiles, reason=note)


__all__ = ["LIKE_INPUT", "PlannedScene", "inside", "output_suffix", "plan_archive"]
