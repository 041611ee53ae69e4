"""One remote scene, wherever it runs (the run's own process, or a Ray worker that reads and writes the bucket
itself): opened where it is (by range) or from its staged copy, its record made to name the objects it was read
from, and its outputs uploaded under the output prefix."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from dualsr_deploy.data.archive import Archive, open_archive, open_paths
from dualsr_deploy.data.remote import Remote, is_url
from dualsr_deploy.data.remote_ranges import vsi_path
from dualsr_deploy.data.remote_scenes import SceneGroup, stage
from dualsr_deploy.errors import RemoteError
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.infer.plan import written_files
from dualsr_deploy.infer.remote_output import RemoteOutput
from dualsr_deploy.infer.stac import item_path


@dataclass(frozen=True)
class Provenance:
    """What a record of a remote scene names instead of local copies: the scene's URL, and each object's ETag."""

    url: str
    identities: dict[str, tuple[int | None, str | None]]  # relative path → (size, ETag or other identity)

    @classmethod
    def of(cls, group: SceneGroup) -> Provenance:
        return cls(group.url, {obj.relative: (obj.size, obj.identity) for obj in group.objects})


def named(record: SceneRecord, provenance: Provenance | None, staging: Path | None, base: str) -> SceneRecord:
    """``record`` naming the objects its scene was read from: the URL as its input, each input file's ETag, and in
    an error the object's URL instead of the staged copy (under ``staging``, the archive's folder ``base``) or the
    GDAL virtual path of an object read by range."""
    if provenance is not None:
        if not is_url(record.input):
            record.input = provenance.url
        for item in record.input_files:
            size_id = provenance.identities.get(str(item.get("path")))
            if size_id is not None and size_id[1] is not None:
                item["etag"] = size_id[1]
    if record.error and staging is not None:  # a reader's message names the staged copy: name the object
        record.error = record.error.replace(f"{staging}/", base)
    if record.error and provenance is not None:  # or GDAL's virtual path of an object read by range
        record.error = record.error.replace(str(vsi_path(provenance.url)), provenance.url)
    return record


def uploaded(record: SceneRecord, sink: RemoteOutput, out_local: Path, options: InferOptions) -> SceneRecord:
    """``record`` after its outputs (and STAC Item) were uploaded under the sink's prefix and removed here: its
    ``output_objects`` (URL, bytes, SHA-256, ETag), or ``failed`` saying what could not be uploaded."""
    assert record.output is not None
    output = Path(record.output)
    outputs = written_files(output, options.qa, options.reference is not None)
    files = [p for p in outputs if p.exists()]
    files += [item_path(output)] if item_path(output).is_file() else []
    files = [p for path in files for p in ([*sorted(path.rglob("*"))] if path.is_dir() else [path]) if p.is_file()]
    try:
        record.output_objects = [sink.upload(path, out_local) for path in files]
    except RemoteError as error:
        record = replace(record, status="failed", error=f"written, but not uploaded: {error}")
    finally:
        item_path(output).unlink(missing_ok=True)
        for path in outputs:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
    return record


def ranged_archive(groups: list[SceneGroup], layout: str | None) -> Archive:
    """Scenes that are one object each, opened where they are (GDAL's virtual paths, h5py over a block-cached file
    object): nothing is downloaded."""
    objects = {group.name: group.objects[0] for group in groups}
    archive = open_paths(
        Path("/"), [(name, vsi_path(obj.url)) for name, obj in objects.items()], layout=layout, remote=True
    )
    archive.entries = [
        replace(
            entry,
            origin=objects[entry.name].url,
            remote=(objects[entry.name].relative, objects[entry.name].size, objects[entry.name].identity),
        )
        for entry in archive.entries
    ]
    return archive


def staged_archive(folder: Path, groups: list[SceneGroup], base: str, options: InferOptions) -> Archive:
    """The staged copies of ``groups`` under ``folder`` as an archive whose scenes are named as a local run of the
    remote tree names them (a STAC Item's scene by its id) and know the URL they came from."""
    archive = open_archive(folder, key=options.key, layout=options.layout)
    urls = {obj.relative: obj.url for group in groups for obj in group.objects}
    names = {group.scene: group.name for group in groups}
    entries = []
    for entry in archive.entries:
        relative = entry.path.relative_to(folder).as_posix()
        entries.append(replace(entry, name=names.get(relative, entry.name), origin=urls.get(relative, base + relative)))
    archive.entries = entries
    return archive


def stage_group(remote: Remote, group: SceneGroup, folder: Path) -> str | None:
    """Download ``group`` under ``folder``; why it could not be (None: it was)."""
    try:
        stage(remote, group, folder)
    except (RemoteError, OSError) as error:
        return str(error)
    return None


__all__ = ["Provenance", "named", "ranged_archive", "stage_group", "staged_archive", "uploaded"]
