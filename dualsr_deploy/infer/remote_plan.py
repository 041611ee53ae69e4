"""What a remote run will do, decided before anything is downloaded: the listing (or a STAC document's Items) as
scenes, which are done already (``--resume`` by size and ETag), which GeoTIFFs GDAL reads by range, where staging
goes and how much of it at once; see :mod:`dualsr_deploy.infer.remote`."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

from dualsr_deploy.data.archive import ArchiveEntry, open_archive
from dualsr_deploy.data.remote import Remote, RemoteObject, key_problem, scheme_of
from dualsr_deploy.data.remote_ranges import RANGE_SUFFIXES
from dualsr_deploy.data.remote_scenes import RemoteScenes, SceneGroup, scene_groups
from dualsr_deploy.data.stac import StacArchive, stac_archive
from dualsr_deploy.errors import RemoteError, RunError
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.options import InferOptions
from dualsr_deploy.infer.plan import PlannedScene, plan_archive, size_text
from dualsr_deploy.infer.routes import Router
from dualsr_deploy.infer.shards import Shard

RANGE_VARIABLE = "DUALSR_RANGE_READS"  # 0: download every scene, GeoTIFFs too
STAGE_BUDGET_VARIABLE = "DUALSR_STAGE_BUDGET"  # bytes of inputs staged at once (default 8G, or half the free disk)
CACHE_VARIABLE = "DUALSR_CACHE_DIR"  # where a run stages inputs and writes outputs before upload (default: temp)


def cache_root() -> Path:
    folder = Path(os.environ.get(CACHE_VARIABLE) or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def work_folder(kind: str) -> Path:
    """A new folder of this process under :func:`cache_root`, named ``dualsr-KIND.HOST.PID.RANDOM``, after removing
    those that processes of this host which died (killed, out of memory) left there: a run, or a cluster worker,
    cleans up after its dead predecessors. A folder of a live process, or of another host sharing the cache, stays."""
    root = cache_root()
    host = socket.gethostname()
    prefix = f"dualsr-{kind}.{host}."
    for folder in root.glob(f"{prefix}*"):
        pid_text = folder.name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or not folder.is_dir() or folder.is_symlink():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's live process
            continue
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}.", dir=root))


def stage_budget(folder: Path) -> int:
    given = os.environ.get(STAGE_BUDGET_VARIABLE, "").strip()
    if given:
        import re

        match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?[bB])?", given)
        if match is None:
            raise RunError(f"{STAGE_BUDGET_VARIABLE}={given!r}: write a size, e.g. 512M or 4G")
        return int(float(match[1]) * 1024 ** " KMGT".index(match[2].upper() or " "))
    return min(8 << 30, shutil.disk_usage(folder).free // 2)


def list_scenes(remote: Remote, source: str, work: Path, shard: Shard | None) -> RemoteScenes:
    try:
        listing = remote.listing(source)
    except RemoteError as error:
        raise RunError(str(error)) from None
    scenes = scene_groups(listing, work / "skeleton")
    shutil.rmtree(work / "skeleton", ignore_errors=True)
    for url, why in listing.refused:
        scenes.failed.append((url.rsplit("/", 1)[-1], url, f"{url}: {why}"))
    if not scenes.groups and not scenes.failed:
        raise RunError(f"{source}: no scene objects here ({len(listing.objects)} objects, none a scene)")
    if shard is not None:  # a part may hold no scene: it then has nothing to do, and says so
        total = len(scenes.groups)
        scenes.groups = [group for group in scenes.groups if shard.owns(group.name)]
        scenes.failed = [item for item in scenes.failed if shard.owns(item[0])]
        scenes.others = total - len(scenes.groups)
    return scenes


def from_stac(remote: Remote, stac: StacArchive) -> RemoteScenes:
    """The Items of a STAC document as scenes: each staged under its id, its objects' sizes and ETags asked for."""
    scenes = RemoteScenes(stac.base)
    scenes.failed = list(stac.failed)
    for scene in stac.scenes:
        objects = []
        try:
            for url in (scene.href, *scene.companions):
                if scheme_of(url) != remote.scheme:
                    raise RemoteError(f"{url}: Items of one run must all be in one kind of storage ({remote.scheme})")
                stat = remote.stat(url)
                if stat is None:
                    raise RemoteError(f"{url}: not found (404)")
                relative = f"{scene.name}/{url.rsplit('/', 1)[1]}"
                problem = key_problem(relative)
                if problem is not None:
                    raise RemoteError(f"{url}: {problem}")
                objects.append(RemoteObject(url, relative, *stat))
        except RemoteError as error:
            scenes.failed.append((scene.name, scene.href, str(error)))
            continue
        scenes.groups.append(SceneGroup(scene.name, objects[0].relative, tuple(objects)))
    return scenes


def inputs_hold(previous: SceneRecord, group: SceneGroup) -> bool:
    """Whether every object the scene was read from is as recorded (size and ETag), without reading it."""
    if not previous.input_files:
        return False
    current = {obj.relative: obj for obj in group.objects}
    for item in previous.input_files:
        obj = current.get(str(item.get("path")))
        if obj is None or obj.size != item.get("bytes") or not item.get("etag") or obj.identity != item.get("etag"):
            return False
    return True


def by_range(group: SceneGroup) -> bool:
    """A scene read by range where it is: one object with nothing read beside it, a GeoTIFF (GDAL, any store) or
    a NetCDF/HDF5 file in S3 or on HTTP(S) (h5py over :mod:`~dualsr_deploy.data.remote_file`; on gs:// and az://
    they are downloaded) — unless ``DUALSR_RANGE_READS=0`` asks for every scene to be downloaded."""
    if os.environ.get(RANGE_VARIABLE, "1").strip() in ("0", "no", "false"):
        return False
    (only, *others) = group.objects
    if others or only.relative != group.scene:
        return False
    name = only.relative.lower()
    if name.endswith((".tif", ".tiff")):
        return True
    return name.endswith(RANGE_SUFFIXES) and only.url.lower().startswith(("s3://", "s3a://", "http://", "https://"))


def dry_plan(
    scenes: RemoteScenes | None,
    source: str,
    out_local: Path,
    options: InferOptions,
    router: Router,
    stac: StacArchive | None = None,
) -> list[PlannedScene]:
    if scenes is None:
        archive = (
            stac_archive(stac, options.root, options.layout)
            if stac is not None
            else open_archive(source, key=options.key, layout=options.layout, root=options.root)
        )
        return plan_archive(archive, out_local, options, hashes=False, count_tiles=router.base.runner.count)
    plan = [
        PlannedScene(
            ArchiveEntry(g.name, Path(g.url)),
            "run",
            reason=f"{g.url}: {len(g.objects)} object(s), {size_text(g.nbytes)}; probed once downloaded",
        )
        for g in scenes.groups
    ]
    plan += [PlannedScene(ArchiveEntry(name, Path(url)), "fail", reason=why) for name, url, why in scenes.failed]
    return plan


__all__ = [
    "CACHE_VARIABLE",
    "RANGE_VARIABLE",
    "STAGE_BUDGET_VARIABLE",
    "by_range",
    "cache_root",
    "dry_plan",
    "from_stac",
    "inputs_hold",
    "list_scenes",
    "stage_budget",
]
